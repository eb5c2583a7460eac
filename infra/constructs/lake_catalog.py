"""The curated lake as an Athena table, for the snapshots one Lambda cannot build in 15 minutes.

PrepareDataset builds a small range's snapshot itself; above `training.prepare_lambda_max_objects` objects or
`prepare_lambda_max_mb` compressed MB it runs cnai.pipeline.athena's SQL instead (docs/registry.md). That SQL
reads this Glue table: the curated JSON Lines (gzip) under `curated/dt=YYYY-MM-DD/`, columns id, text, label,
tenant, source, timestamp as strings, partition `dt` found by partition projection (no crawler, no
MSCK REPAIR: a new day's partition exists as soon as its objects do). Queries run in a workgroup of our own
whose settings are enforced: results under `athena/` of the artifacts bucket, SSE-KMS with the stack key, a
per-query scan limit.
"""

from __future__ import annotations

import re

import aws_cdk as cdk
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

COLUMNS = ("id", "text", "label", "tenant", "source", "timestamp")
RESULTS = "athena"
GLUE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,254}$")


class LakeCatalog(Construct):
    """`database`, `table` (Glue names), `workgroup` (Athena name) and the ARNs IAM needs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        database: str,
        lake: s3.IBucket,
        curated_prefix: str,
        results: s3.IBucket,
        key: kms.IKey,
        workgroup: str,
        first_day: str = "2020-01-01",
        scan_limit_gb: int = 1024,
    ) -> None:
        super().__init__(scope, construct_id)
        if not GLUE_NAME.fullmatch(database):
            raise ValueError(f"Glue database {database!r}: lower-case letters, digits and '_'")
        stack = cdk.Stack.of(self)
        self.database, self.table = database, "curated"
        self.workgroup = workgroup
        db = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=database, description="cnai data lake (curated records) for the training snapshots"
            ),
        )
        location = f"s3://{lake.bucket_name}/{curated_prefix}/"
        table = glue.CfnTable(
            self,
            "Curated",
            catalog_id=stack.account,
            database_name=database,
            table_input=glue.CfnTable.TableInputProperty(
                name=self.table,
                description="curated JSON Lines (gzip), one partition per UTC day",
                table_type="EXTERNAL_TABLE",
                partition_keys=[glue.CfnTable.ColumnProperty(name="dt", type="string")],
                parameters={
                    "classification": "json",
                    "compressionType": "gzip",
                    "projection.enabled": "true",
                    "projection.dt.type": "date",
                    "projection.dt.format": "yyyy-MM-dd",
                    "projection.dt.range": f"{first_day},NOW",
                    "projection.dt.interval": "1",
                    "projection.dt.interval.unit": "DAYS",
                    "storage.location.template": f"{location}dt=${{dt}}/",
                },
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location,
                    columns=[glue.CfnTable.ColumnProperty(name=c, type="string") for c in COLUMNS],
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.openx.data.jsonserde.JsonSerDe",
                        parameters={"ignore.malformed.json": "true"},
                    ),
                ),
            ),
        )
        table.add_resource_dependency(db)
        self.results_prefix = RESULTS
        athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=workgroup,
            description="cnai training snapshots (PrepareDataset's Athena path)",
            recursive_delete_option=True,
            state="ENABLED",
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=scan_limit_gb * 1024**3,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{results.bucket_name}/{RESULTS}/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=key.key_arn
                    ),
                ),
            ),
        )
        self.workgroup_arn = stack.format_arn(service="athena", resource="workgroup", resource_name=workgroup)
        self.glue_arns = [
            stack.format_arn(service="glue", resource="catalog"),
            stack.format_arn(service="glue", resource="database", resource_name=database),
            stack.format_arn(service="glue", resource="table", resource_name=f"{database}/{self.table}"),
        ]
