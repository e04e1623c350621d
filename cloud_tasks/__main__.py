from cloud_tasks.cli import main

raise SystemExit(main())
