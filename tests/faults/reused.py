"""Faults already injected by tests outside ``tests/faults``: counted in the fault summary, not repeated here.

Each entry maps the pytest node id of the test to the fault it injects; every one of these tests
asserts the error message (file and problem) and that nothing is left behind or lost.
"""

from __future__ import annotations

EXTRACT = "tests/test_extract.py"
CONVERT = "tests/test_convert.py"
ML = "tests/test_ml.py"
SST = "tests/test_sst.py"

# The cases of tests/test_extract.py::BAD (bad zips: empty, not a zip, truncated, '../' and absolute
# members, links, bombs, two products or none...), each asserting the message and an empty output folder.
BAD_ZIP_CASES = (
    "empty file",
    "not a zip",
    "truncated",
    "corrupt deflated",
    "corrupt stored",
    "dot-dot",
    "dot-dot top",
    "absolute",
    "backslash",
    "drive letter",
    "symlink",
    "fifo",
    "encrypted",
    "outside",
    "outside other folder",
    "two products",
    "no product",
    "zero members",
    "wrong product",
    "duplicate",
    "file and folder",
    "inode bomb",
    "ratio bomb",
    "total ratio bomb",
    "lying header",
)

REUSED: dict[str, str] = {
    **{f"{EXTRACT}::test_bad_zip_is_rejected_leaving_nothing[{case}]": f"zip: {case}" for case in BAD_ZIP_CASES},
    f"{EXTRACT}::test_declared_total_size_limit": "zip over the unpacked-size cap (disk use bounded)",
    f"{EXTRACT}::test_not_a_product_name_or_not_a_file": "zip name that does not parse, missing zip",
    f"{EXTRACT}::test_keep_going": "one bad zip among good ones extracted",
    f"{EXTRACT}::test_sigkill_mid_extraction_leaves_no_product": "extract SIGKILLed: no half product, rerun ok",
    f"{CONVERT}::test_missing_netcdf_file_names_the_file": "product missing a NetCDF file",
    f"{CONVERT}::test_missing_variable_names_file_and_variable": "NetCDF file missing a variable",
    f"{CONVERT}::test_wrong_dtype_is_refused": "variable of the wrong dtype",
    f"{CONVERT}::test_truncated_netcdf_is_refused": "NetCDF truncated mid-file (API)",
    f"{CONVERT}::test_all_fill_radiance_in_a_day_product_is_refused": "radiance all fill (API)",
    f"{CONVERT}::test_keep_going_converts_the_good_products": "one bad product among good ones converted",
    f"{ML}::test_killed_run_resumes_after_its_last_epoch": "train SIGKILLed mid-run: resumes, same epochs in total",
    f"{ML}::test_bad_hdf_for_training_names_the_file": "training input that is not HDF5",
    f"{ML}::test_no_usable_product_is_a_clear_error": "no usable training product (night, degenerate labels)",
    f"{ML}::test_other_parameters_on_a_used_out_are_refused": "training OUT reused with other parameters",
    f"{ML}::test_inference_rejects_a_non_model_and_bad_hdf": "model file that is not a model, inference input not HDF5",
    f"{SST}::test_missing_columns_are_all_named": "match-up table missing columns",
    f"{SST}::test_everything_filtered_names_the_filter": "match-up table with no row left after filtering",
    f"{SST}::test_no_masks_for_any_product": "no mask for any match-up product",
    f"{SST}::test_mask_without_cloud_mask_variable": "mask file without its cloud_mask variable",
    f"{SST}::test_mask_of_another_product": "mask file of another product",
    f"{SST}::test_unreadable_table[garbage.h5-not hdf5 at all]": "match-up table that is not HDF5",
    f"{SST}::test_unreadable_table[empty.csv-]": "empty match-up table",
    f"{SST}::test_missing_table_and_unknown_format": "missing match-up table, unknown format",
    "tests/test_archive.py::test_bad_arguments": "missing archive root, empty interval (discover)",
    "tests/test_archive.py::test_file_list": "file list naming a missing zip or a bad name",
    "tests/test_operators.py::test_local_runner_reports_a_failing_command": "ML step failing: the task fails",
    "tests/dags/test_dag_run.py::test_corrupt_product_fails_only_its_instance_without_retry": "DAG: 1 of 5 zips bad",
    "tests/dags/test_dag_run.py::test_second_run_of_the_same_day_reuses_every_output": "DAG: day re-run (no rewrite)",
}
