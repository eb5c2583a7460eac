"""Deploy the synthesized CloudFormation templates into moto: the local platform's `cdk deploy`.

Why our own and not moto's CloudFormation: moto's CFN provisioner refuses our templates (KMS keys referenced
by GetAtt, tags on API Gateway stages) and would try to fetch Lambda code assets that were never uploaded. The
local platform needs only the resources that data flows through (buckets, the stream, tables, queues, topics,
log groups, the model package groups, the state machines) plus each Lambda function's handler and
environment. This module gives every resource a physical name, resolves the intrinsic functions CDK emits
(Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, Fn::ImportValue, Fn::If on known conditions,
pseudo parameters) exactly once, and creates those resources through boto3 — which reaches moto through
AWS_ENDPOINT_URL like any other client. The Lambda functions also exist in moto's Lambda (placeholder code,
the template's handler and environment, a role of the same name in moto's IAM), with the templates' versions
and aliases, because the deploy workflow drives the Lambda API (docs/deploy.md). Everything else (IAM policies,
alarms, API Gateway, Firehose) is named so that references resolve, and left out: the local platform has no
IAM to enforce and no CloudWatch to alarm.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

ACCOUNT = "123456789012"  # moto's default account: ARNs we build must match the ones moto returns
REGION = "us-east-1"


class TemplateError(Exception):
    """A template uses something the local deployment cannot resolve; the message names stack and path."""


@dataclass
class Function:
    """A Lambda function of the templates, as the local platform runs it: in process, by its handler path."""

    stack: str
    logical_id: str
    name: str
    handler: str
    environment: dict[str, str]
    timeout_s: int
    memory_mb: int

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.name}"


@dataclass
class Physical:
    ref: str
    attrs: dict[str, str] = field(default_factory=dict)


def _short(text: str, limit: int) -> str:
    """Names AWS limits in length keep a hash suffix, so two long names never collide once cut."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[: limit - 9]}-{digest}"


class LocalDeployment:
    """The resources of one or more synthesized stacks, resolved and (with `create`) made in moto."""

    def __init__(self, templates: Mapping[str, Mapping[str, Any]]) -> None:
        self.templates = {name: dict(t) for name, t in templates.items()}
        self._physical: dict[tuple[str, str], Physical] = {}
        self._resolving: set[tuple[str, str]] = set()
        self.outputs: dict[str, dict[str, str]] = {}
        self.functions: dict[str, Function] = {}
        self.state_machines: dict[str, str] = {}  # logical id -> ARN

    # ---- naming --------------------------------------------------------------------------------------

    def _default_name(self, stack: str, logical_id: str, limit: int = 64, lower: bool = False) -> str:
        base = f"{stack}-{re.sub(r'[0-9A-F]{8}$', '', logical_id)}"
        base = re.sub(r"[^A-Za-z0-9-]", "-", base)
        return _short(base.lower() if lower else base, limit)

    def physical(self, stack: str, logical_id: str) -> Physical:
        key = (stack, logical_id)
        if key in self._physical:
            return self._physical[key]
        resources = self.templates[stack].get("Resources", {})
        if logical_id not in resources:
            raise TemplateError(f"{stack}: Ref/GetAtt to unknown resource {logical_id}")
        if key in self._resolving:
            raise TemplateError(f"{stack}: circular reference through {logical_id}")
        self._resolving.add(key)
        try:
            found = self._name(stack, logical_id, resources[logical_id])
        finally:
            self._resolving.discard(key)
        self._physical[key] = found
        return found

    def _prop(self, stack: str, resource: Mapping[str, Any], name: str) -> Any:
        value = resource.get("Properties", {}).get(name)
        return None if value is None else self.resolve(stack, value)

    def _name(self, stack: str, logical_id: str, resource: Mapping[str, Any]) -> Physical:
        kind = resource["Type"]
        arn = f"arn:aws:{{svc}}:{REGION}:{ACCOUNT}:{{rest}}"
        if kind == "AWS::S3::Bucket":
            name = self._prop(stack, resource, "BucketName") or self._default_name(stack, logical_id, 63, True)
            return Physical(
                name,
                {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"},
            )
        if kind == "AWS::Kinesis::Stream":
            name = self._prop(stack, resource, "Name") or self._default_name(stack, logical_id, 128)
            return Physical(name, {"Arn": arn.format(svc="kinesis", rest=f"stream/{name}")})
        if kind == "AWS::DynamoDB::Table":
            name = self._prop(stack, resource, "TableName") or self._default_name(stack, logical_id, 255)
            return Physical(name, {"Arn": arn.format(svc="dynamodb", rest=f"table/{name}")})
        if kind == "AWS::SQS::Queue":
            name = self._prop(stack, resource, "QueueName") or self._default_name(stack, logical_id, 80)
            return Physical(
                f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
                {"Arn": arn.format(svc="sqs", rest=name), "QueueName": name},
            )
        if kind == "AWS::SNS::Topic":
            name = self._prop(stack, resource, "TopicName") or self._default_name(stack, logical_id, 256)
            topic_arn = arn.format(svc="sns", rest=name)
            return Physical(topic_arn, {"TopicArn": topic_arn, "TopicName": name})
        if kind == "AWS::Lambda::Function":
            name = self._prop(stack, resource, "FunctionName") or self._default_name(stack, logical_id, 64)
            return Physical(name, {"Arn": arn.format(svc="lambda", rest=f"function:{name}")})
        if kind == "AWS::Logs::LogGroup":
            name = self._prop(stack, resource, "LogGroupName") or f"/local/{self._default_name(stack, logical_id)}"
            return Physical(name, {"Arn": arn.format(svc="logs", rest=f"log-group:{name}:*")})
        if kind == "AWS::IAM::Role":
            name = self._prop(stack, resource, "RoleName") or self._default_name(stack, logical_id)
            return Physical(name, {"Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}", "RoleId": name})
        if kind == "AWS::KMS::Key":
            key_id = hashlib.sha256(f"{stack}/{logical_id}".encode()).hexdigest()[:32]
            key_id = f"{key_id[:8]}-{key_id[8:12]}-{key_id[12:16]}-{key_id[16:20]}-{key_id[20:32]}"
            return Physical(key_id, {"Arn": arn.format(svc="kms", rest=f"key/{key_id}"), "KeyId": key_id})
        if kind == "AWS::SageMaker::ModelPackageGroup":
            name = self._prop(stack, resource, "ModelPackageGroupName") or self._default_name(stack, logical_id)
            group_arn = arn.format(svc="sagemaker", rest=f"model-package-group/{name.lower()}")
            return Physical(group_arn, {"ModelPackageGroupArn": group_arn, "ModelPackageGroupName": name})
        if kind == "AWS::StepFunctions::StateMachine":
            name = self._prop(stack, resource, "StateMachineName") or self._default_name(stack, logical_id, 80)
            machine_arn = arn.format(svc="states", rest=f"stateMachine:{name}")
            return Physical(machine_arn, {"Arn": machine_arn, "Name": name})
        # Everything else only needs to be referable: a stable name and ARN-shaped attributes.
        name = self._default_name(stack, logical_id)
        service = kind.split("::")[1].lower() if kind.count("::") == 2 else "local"
        return Physical(name, {"Arn": arn.format(svc=service, rest=name)})

    # ---- intrinsic functions ---------------------------------------------------------------------------

    def resolve(self, stack: str, value: Any) -> Any:
        """The value with every intrinsic function CDK emits evaluated (strings, lists, dicts)."""
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), *_ = value.items()
            handler = self._intrinsics().get(key)
            if handler is not None:
                return handler(stack, arg)
        return {k: self.resolve(stack, v) for k, v in value.items()}

    def _intrinsics(self) -> dict[str, Callable[[str, Any], Any]]:
        return {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Join": lambda s, a: str(a[0]).join(str(self.resolve(s, v)) for v in self.resolve(s, a[1])),
            "Fn::Sub": self._sub,
            "Fn::Select": lambda s, a: self.resolve(s, a[1])[int(self.resolve(s, a[0]))],
            "Fn::Split": lambda s, a: str(self.resolve(s, a[1])).split(a[0]),
            "Fn::ImportValue": self._import,
            "Fn::If": self._if,
            "Fn::Base64": lambda s, a: self.resolve(s, a),
            "Fn::GetAZs": lambda s, a: [f"{REGION}a", f"{REGION}b"],
        }

    _PSEUDO: ClassVar[dict[str, str | None]] = {
        "AWS::AccountId": ACCOUNT,
        "AWS::Region": REGION,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NoValue": None,
    }

    def _ref(self, stack: str, name: str) -> Any:
        if name in self._PSEUDO:
            return self._PSEUDO[name]
        if name == "AWS::StackName":
            return stack
        if name == "AWS::StackId":
            return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack}/local"
        parameters = self.templates[stack].get("Parameters", {})
        if name in parameters:
            default = parameters[name].get("Default")
            if default is None:
                raise TemplateError(f"{stack}: parameter {name} has no default")
            return default
        return self.physical(stack, name).ref

    def _get_att(self, stack: str, arg: Any) -> str:
        logical_id, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
        found = self.physical(stack, logical_id)
        if attribute in found.attrs:
            return found.attrs[attribute]
        if attribute.endswith("Arn") and "Arn" in found.attrs:
            return found.attrs["Arn"]
        return f"{found.ref}/{attribute}"

    def _sub(self, stack: str, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        resolved = {k: self.resolve(stack, v) for k, v in variables.items()}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in resolved:
                return str(resolved[name])
            if "." in name:
                return str(self._get_att(stack, name))
            return str(self._ref(stack, name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def _import(self, stack: str, arg: Any) -> Any:
        wanted = self.resolve(stack, arg)
        for other, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                export = output.get("Export", {}).get("Name")
                if export is not None and self.resolve(other, export) == wanted:
                    return self.resolve(other, output["Value"])
        raise TemplateError(f"{stack}: Fn::ImportValue {wanted!r} is exported by no stack")

    def _if(self, stack: str, arg: Any) -> Any:
        condition, when_true, when_false = arg
        conditions = self.templates[stack].get("Conditions", {})
        if condition not in conditions:
            raise TemplateError(f"{stack}: unknown condition {condition}")
        return self.resolve(stack, when_true if self._condition(stack, conditions[condition]) else when_false)

    def _condition(self, stack: str, expression: Any) -> bool:
        if isinstance(expression, dict) and len(expression) == 1:
            (key, arg), *_ = expression.items()
            if key == "Fn::Equals":
                return bool(self.resolve(stack, arg[0]) == self.resolve(stack, arg[1]))
            if key == "Fn::Not":
                return not self._condition(stack, arg[0])
            if key == "Fn::And":
                return all(self._condition(stack, a) for a in arg)
            if key == "Fn::Or":
                return any(self._condition(stack, a) for a in arg)
            if key == "Condition":
                return self._condition(stack, self.templates[stack]["Conditions"][arg])
        raise TemplateError(f"{stack}: condition {json.dumps(expression)[:200]} is not supported locally")

    # ---- outputs and creation ----------------------------------------------------------------------------

    def output(self, stack: str, output_id: str) -> str:
        """A stack output's value (stable output ids are what tests and the local platform read back)."""
        outputs = self.templates[stack].get("Outputs", {})
        if output_id not in outputs:
            raise TemplateError(f"{stack} has no output {output_id} (outputs: {', '.join(sorted(outputs))})")
        return str(self.resolve(stack, outputs[output_id]["Value"]))

    def resources(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (stack, lid, resource)
            for stack, template in self.templates.items()
            for lid, resource in template.get("Resources", {}).items()
            if resource.get("Type") == kind
        ]

    def create(self, session: Any) -> None:
        """Create the data-path resources in moto (session: a boto3 Session pointed at it)."""
        s3, kinesis, ddb = session.client("s3"), session.client("kinesis"), session.client("dynamodb")
        sqs, sns, logs = session.client("sqs"), session.client("sns"), session.client("logs")
        sagemaker, sfn = session.client("sagemaker"), session.client("stepfunctions")
        for stack, lid, resource in self.resources("AWS::S3::Bucket"):
            name = self.physical(stack, lid).ref
            s3.create_bucket(Bucket=name)
            versioning = (resource.get("Properties") or {}).get("VersioningConfiguration") or {}
            if versioning.get("Status") == "Enabled":
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        for stack, lid, _ in self.resources("AWS::Kinesis::Stream"):
            kinesis.create_stream(StreamName=self.physical(stack, lid).ref, ShardCount=1)
        for stack, lid, resource in self.resources("AWS::DynamoDB::Table"):
            props = self.resolve(stack, resource["Properties"])
            ddb.create_table(
                TableName=self.physical(stack, lid).ref,
                KeySchema=props["KeySchema"],
                AttributeDefinitions=props["AttributeDefinitions"],
                BillingMode="PAY_PER_REQUEST",
            )
        for stack, lid, _ in self.resources("AWS::SQS::Queue"):
            sqs.create_queue(QueueName=self.physical(stack, lid).attrs["QueueName"])
        for stack, lid, _ in self.resources("AWS::SNS::Topic"):
            sns.create_topic(Name=self.physical(stack, lid).attrs["TopicName"])
        for stack, lid, _ in self.resources("AWS::Logs::LogGroup"):
            logs.create_log_group(logGroupName=self.physical(stack, lid).ref)
        for stack, lid, resource in self.resources("AWS::SageMaker::ModelPackageGroup"):
            name = self.physical(stack, lid).attrs["ModelPackageGroupName"]
            description = self._prop(stack, resource, "ModelPackageGroupDescription") or name
            sagemaker.create_model_package_group(ModelPackageGroupName=name, ModelPackageGroupDescription=description)
        for stack, lid, resource in self.resources("AWS::Lambda::Function"):
            props = resource.get("Properties", {})
            env = self.resolve(stack, (props.get("Environment") or {}).get("Variables") or {})
            function = Function(
                stack=stack,
                logical_id=lid,
                name=self.physical(stack, lid).ref,
                handler=str(props.get("Handler", "")),
                environment={k: str(v) for k, v in env.items() if v is not None},
                timeout_s=int(props.get("Timeout", 3)),
                memory_mb=int(props.get("MemorySize", 128)),
            )
            self.functions[function.name] = function
        self._create_lambda_api(session)
        for stack, lid, resource in self.resources("AWS::StepFunctions::StateMachine"):
            props = resource["Properties"]
            definition = self.resolve(stack, props.get("DefinitionString") or json.dumps(props.get("Definition")))
            found = self.physical(stack, lid)
            sfn.create_state_machine(
                name=found.attrs["Name"],
                definition=definition if isinstance(definition, str) else json.dumps(definition),
                roleArn=str(self.resolve(stack, props["RoleArn"])),
                type=props.get("StateMachineType", "STANDARD"),
                tags=[
                    {"key": str(tag["Key"]), "value": str(self.resolve(stack, tag["Value"]))}
                    for tag in props.get("Tags", [])
                ],
            )
            self.state_machines[lid] = found.ref

    def _create_lambda_api(self, session: Any) -> None:
        """The functions, their versions and aliases in moto's Lambda too (a placeholder zip: the code runs in
        process, see infra/local/functions.py), so the Lambda API the deploy workflow drives (configuration,
        PublishVersion, aliases with routing) answers as in AWS. Their roles are created in moto's IAM first:
        moto's CreateFunction refuses a role it does not know."""
        import io
        import zipfile

        iam, lambda_ = session.client("iam"), session.client("lambda")
        principal = {"Service": "lambda.amazonaws.com"}
        statement = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": principal}
        trust = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        roles = set()
        for function in self.functions.values():
            props = self.templates[function.stack]["Resources"][function.logical_id].get("Properties", {})
            role = str(self.resolve(function.stack, props.get("Role") or ""))
            if not role.startswith("arn:aws:iam::"):  # a hand-written test template may name none
                role = f"arn:aws:iam::{ACCOUNT}:role/cnai-local-lambda"
            if role not in roles:
                roles.add(role)
                iam.create_role(RoleName=role.rsplit("/", 1)[-1], AssumeRolePolicyDocument=trust)
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                archive.writestr("README", "runs in process: infra/local/functions.py")
            lambda_.create_function(
                FunctionName=function.name,
                Runtime=str(props.get("Runtime", "python3.12")),
                Role=role,
                Handler=function.handler,
                Code={"ZipFile": buffer.getvalue()},
                Timeout=function.timeout_s,
                MemorySize=function.memory_mb,
                Environment={"Variables": function.environment},
            )
        for stack, lid, resource in self.resources("AWS::Lambda::Version"):
            name = str(self.resolve(stack, resource["Properties"]["FunctionName"])).rsplit(":", 1)[-1]
            version = str(lambda_.publish_version(FunctionName=name)["Version"])
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}:{version}"
            self._physical[(stack, lid)] = Physical(arn, {"Version": version, "Arn": arn})
        for stack, _, resource in self.resources("AWS::Lambda::Alias"):
            props = resource["Properties"]
            name = str(self.resolve(stack, props["FunctionName"])).rsplit(":", 1)[-1]
            version = str(self.resolve(stack, props["FunctionVersion"]))
            lambda_.create_alias(FunctionName=name, Name=str(props["Name"]), FunctionVersion=version)
