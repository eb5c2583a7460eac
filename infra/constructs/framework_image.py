"""AWS Deep Learning Container image URIs, looked up at synth time with the SageMaker SDK's own table.

`sagemaker.core.image_uris.retrieve` (the `sagemaker-core` distribution: the lookup and its JSON config
without the ~130 packages of the `sagemaker` meta-package) knows every framework version, Python version,
processor and the registry account of every region, including the opt-in and China regions whose accounts
differ. A hand-written account map goes stale; this table moves with one pinned package.

The lookup needs a concrete region. A stack whose region is a token (environment-agnostic) gets a
CfnMapping from region to URI built from the same table, resolved by CloudFormation at deploy time.
Used at synth only (infra extra): never shipped in a Lambda asset or layer.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Literal, NamedTuple

import aws_cdk as cdk
from constructs import Construct

# <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>[:<tag>][@sha256:<digest>]
ECR_IMAGE_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>[a-z0-9][a-z0-9._/-]*)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@sha256:[0-9a-f]{64})?$"
)
Scope = Literal["training", "inference"]


class FrameworkImage(NamedTuple):
    """An image URI and the one ECR repository a role must be allowed to pull it from."""

    uri: str
    repository_arn: str


class EcrImage(NamedTuple):
    account: str
    region: str
    repository: str


def parse_image_uri(image_uri: str) -> EcrImage:
    """Account, region and repository of an ECR image URI (tag or digest). Raises ValueError otherwise."""
    match = ECR_IMAGE_URI.match(image_uri)
    if match is None:
        raise ValueError(
            f"image_uri {image_uri!r}: expected an ECR image "
            "<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> (or @sha256:<digest>)"
        )
    return EcrImage(match["account"], match["region"], match["repository"])


@cache
def retrieve(framework: str, region: str, version: str, py_version: str, instance_type: str, scope: Scope) -> str:
    """The DLC URI from the SageMaker SDK's table; ValueError names the version/Python/region it lacks."""
    from sagemaker.core import image_uris  # synth-time only: the infra extra

    try:
        return str(
            image_uris.retrieve(
                framework,
                region=region,
                version=version,
                py_version=py_version,
                instance_type=instance_type,
                image_scope=scope,
            )
        )
    except ValueError as exc:
        raise ValueError(
            f"no {framework} {scope} image for version {version}, {py_version}, {instance_type} in {region}: {exc}"
        ) from None


@cache
def regions(framework: str, version: str, scope: Scope) -> tuple[str, ...]:
    """Every region the SDK's table has a registry for, for this framework version and scope."""
    from sagemaker.core import image_uris

    config = image_uris.config_for_framework(framework)[scope]
    versions = config["versions"]
    key = config.get("version_aliases", {}).get(version, version)
    if key not in versions:
        raise ValueError(f"{framework} {scope}: no version {version} (known: {', '.join(versions)})")
    return tuple(sorted(versions[key]["registries"]))


def framework_image(
    scope: Construct,
    construct_id: str,
    *,
    framework: str = "pytorch",
    version: str,
    py_version: str,
    instance_type: str,
    image_scope: Scope,
) -> FrameworkImage:
    """The framework image for the stack's region (a CfnMapping over every region when it is a token)."""
    stack = cdk.Stack.of(scope)
    if not cdk.Token.is_unresolved(stack.region):
        uri = retrieve(framework, stack.region, version, py_version, instance_type, image_scope)
        image = parse_image_uri(uri)
        arn = f"arn:{stack.partition}:ecr:{image.region}:{image.account}:repository/{image.repository}"
        return FrameworkImage(uri, arn)
    uris = {
        r: retrieve(framework, r, version, py_version, instance_type, image_scope)
        for r in regions(framework, version, image_scope)
    }
    mapping = cdk.CfnMapping(
        scope,
        construct_id,
        mapping={r: {"uri": u, "account": parse_image_uri(u).account} for r, u in uris.items()},
    )
    repositories = {parse_image_uri(u).repository for u in uris.values()}
    if len(repositories) != 1:
        raise ValueError(f"{framework} {image_scope} {version}: the repository differs by region ({repositories})")
    account = mapping.find_in_map(stack.region, "account")
    arn = f"arn:{stack.partition}:ecr:{stack.region}:{account}:repository/{repositories.pop()}"
    return FrameworkImage(mapping.find_in_map(stack.region, "uri"), arn)
