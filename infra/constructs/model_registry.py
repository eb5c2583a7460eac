"""The SageMaker Model Registry side of the training workflow: one ModelPackageGroup per model.

CDK creates the groups (not the Register function on first use), so the group exists with its description
and tags before any version does, IAM can name each group's ARN, and deleting the stack is the one way a
group goes away (retained by default: its versions are the history of what was served).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

GROUP_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"


class ModelRegistry(Construct):
    """`groups`: model name -> CfnModelPackageGroup; `names`: model name -> group name; ARNs for IAM."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        groups: Mapping[str, str],
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        """`groups`: model name -> group name (Settings.package_group: `<project>-<stage>-<model>`)."""
        super().__init__(scope, construct_id)
        if not groups:
            raise ValueError("groups: at least one model needs a package group")
        bad = [name for name in groups.values() if not re.fullmatch(GROUP_NAME, name)]
        if bad:
            raise ValueError(f"model package group name {bad[0]!r}: letters, digits and '-', at most 63 characters")
        self.names = dict(groups)
        self.groups: dict[str, sagemaker.CfnModelPackageGroup] = {}
        for model, name in self.names.items():
            group = sagemaker.CfnModelPackageGroup(
                self,
                f"Group-{model}",
                model_package_group_name=name,
                model_package_group_description=f"cnai {model}: versions registered by the training workflow",
                tags=[cdk.CfnTag(key="model", value=model)],
            )
            group.apply_removal_policy(removal_policy)
            self.groups[model] = group

    def group_arns(self) -> list[str]:
        """The groups' ARNs (SageMaker lowercases resource names in ARNs)."""
        stack = cdk.Stack.of(self)
        return [
            stack.format_arn(service="sagemaker", resource="model-package-group", resource_name=name.lower())
            for name in self.names.values()
        ]

    def package_arns(self) -> list[str]:
        """The versions of every group: model-package/<group>/<version>."""
        stack = cdk.Stack.of(self)
        return [
            stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{name.lower()}/*")
            for name in self.names.values()
        ]
