"""``xfdumanifest.xml`` of a generated product: a small XFDU manifest like the real one."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cloud_tasks.sample.specs import ProductSpec

MANIFEST = "xfdumanifest.xml"
_NAMESPACES = (
    'xmlns:xfdu="urn:ccsds:schema:xfdu:1" xmlns:sentinel-safe="http://www.esa.int/safe/sentinel/1.1" '
    'xmlns:sentinel3="http://www.esa.int/safe/sentinel/sentinel-3/1.0"'
)
_METADATA_IDS = ("acquisitionPeriod", "platform", "measurementOrbitReference", "generalProductInformation")


def _data_objects(files: list[Path]) -> tuple[list[str], list[str]]:
    """(content units, data objects with size and MD5) of the product's NetCDF files."""
    units, objects = [], []
    for path in files:
        object_id = f"SLSTR_{path.stem.upper()}_Data"
        units.append(
            f'      <xfdu:contentUnit ID="SLSTR_{path.stem.upper()}_Unit" unitType="Measurement Data Unit">\n'
            f'        <dataObjectPointer dataObjectID="{object_id}"/>\n      </xfdu:contentUnit>'
        )
        data = path.read_bytes()
        objects.append(
            f'    <dataObject ID="{object_id}">\n'
            f'      <byteStream mimeType="application/x-netcdf" size="{len(data)}">\n'
            f'        <fileLocation locatorType="URL" href="./{path.name}"/>\n'
            f'        <checksum checksumName="MD5">{hashlib.md5(data).hexdigest()}</checksum>\n'
            "      </byteStream>\n    </dataObject>"
        )
    return units, objects


def _metadata_objects(spec: ProductSpec) -> str:
    """The metadata section's objects: acquisition period, platform, orbit and product information."""
    name = spec.name
    start, stop = (f"{t:%Y-%m-%dT%H:%M:%S.%f}Z" for t in (spec.start_time, spec.stop_time))
    metadata = (
        f"<sentinel-safe:acquisitionPeriod><sentinel-safe:startTime>{start}</sentinel-safe:startTime>"
        f"<sentinel-safe:stopTime>{stop}</sentinel-safe:stopTime></sentinel-safe:acquisitionPeriod>",
        f"<sentinel-safe:platform><sentinel-safe:familyName>Sentinel-3</sentinel-safe:familyName>"
        f"<sentinel-safe:number>{name.mission[-1]}</sentinel-safe:number></sentinel-safe:platform>",
        f"<sentinel-safe:orbitReference><sentinel-safe:orbitNumber>{spec.absolute_orbit}</sentinel-safe:orbitNumber>"
        f"<sentinel-safe:relativeOrbitNumber>{name.relative_orbit}</sentinel-safe:relativeOrbitNumber>"
        f"<sentinel-safe:cycleNumber>{name.cycle}</sentinel-safe:cycleNumber></sentinel-safe:orbitReference>",
        f"<sentinel3:generalProductInformation><sentinel3:productName>{name.sen3}</sentinel3:productName>"
        f"<sentinel3:productType>SL_1_RBT___</sentinel3:productType>"
        f"<sentinel3:timeliness>{name.timeliness}</sentinel3:timeliness>"
        f"<sentinel3:baselineCollection>{name.baseline}</sentinel3:baselineCollection>"
        f"<sentinel3:creationTime>{name.creation:%Y%m%dT%H%M%S}</sentinel3:creationTime>"
        f"<sentinel3:productUnit><sentinel3:type>FRAME</sentinel3:type>"
        f"<sentinel3:duration>{name.duration_s}</sentinel3:duration>"
        f"<sentinel3:alongtrackCoordinate>{int(name.frame)}</sentinel3:alongtrackCoordinate></sentinel3:productUnit>"
        f"</sentinel3:generalProductInformation>",
    )
    return "\n".join(
        f'    <metadataObject ID="{object_id}" classification="DESCRIPTION" category="DMD">\n'
        '      <metadataWrap mimeType="text/xml" vocabularyName="Sentinel-SAFE">\n'
        f"        <xmlData>{xml}</xmlData>\n      </metadataWrap>\n"
        "    </metadataObject>"
        for object_id, xml in zip(_METADATA_IDS, metadata, strict=True)
    )


def manifest(spec: ProductSpec, files: list[Path]) -> str:
    """A small XFDU manifest: acquisition period, platform, product information and the data objects."""
    units, objects = _data_objects(files)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<xfdu:XFDU {_NAMESPACES} version="esa/safe/sentinel/sentinel-3/slstr/level-1/1.0">\n'
        "  <informationPackageMap>\n"
        '    <xfdu:contentUnit ID="packageUnit" unitType="Information Package" '
        'textInfo="SENTINEL-3 SLSTR Level 1 package" dmdID="acquisitionPeriod platform">\n'
        + "\n".join(units)
        + "\n    </xfdu:contentUnit>\n  </informationPackageMap>\n"
        f"  <metadataSection>\n{_metadata_objects(spec)}\n  </metadataSection>\n"
        "  <dataObjectSection>\n" + "\n".join(objects) + "\n  </dataObjectSection>\n</xfdu:XFDU>\n"
    )
