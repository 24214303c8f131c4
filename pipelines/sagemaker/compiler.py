"""The SageMaker Pipeline compiled from the one DAG declaration (``pipelines.definition``).

Each declared step becomes its SageMaker counterpart and references become step properties: the same dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from pipelines import dag
from pipelines.definition import data_parameters
from pipelines.sagemaker.staging import no_champion, staged_code

XGBOOST_IMAGE_VERSION = "3.0-5"  # the image the local emulation reproduces (XGBoost 3.0.5)
CACHE_EXPIRY = "P30D"
CONTENT_TYPES = ["text/csv", "application/json", "text/libsvm"]
RESPONSE_TYPES = ["text/csv", "application/json"]

# Only on AWS: where the jobs run. Locally there is one machine.
AWS_PARAMETERS = (
    dag.Parameter("ProcessingInstanceType", "String", "ml.m5.large", "instance type of the Processing jobs"),
    dag.Parameter("TrainingInstanceType", "String", "ml.m5.large", "instance type of the training job"),
    dag.Parameter("TrainingVolumeSizeInGB", "Integer", 30, "storage (GB) of each training instance: its share of "
                  "the train split, the whole validation split and the model", minimum=1),
    dag.Parameter("InferenceInstanceType", "String", "ml.m5.large", "instance type the model is registered for"),
)
COMPARISONS = {
    ">=": "ConditionGreaterThanOrEqualTo",
    ">": "ConditionGreaterThan",
    "<=": "ConditionLessThanOrEqualTo",
    "<": "ConditionLessThan",
    "==": "ConditionEquals",
}


@dataclass(frozen=True)
class AwsTarget:
    """Where the pipeline runs: the account's region, the SageMaker execution role and the artifact bucket."""

    region: str
    role_arn: str
    bucket: str
    prefix: str = "cloudviz"
    input_data_uri: str = ""  # the InputData default on AWS (the staged iris CSV when the local default is empty)


class Compiler:
    """Turns one ``dag.Pipeline`` into a ``sagemaker.mlops.workflow.pipeline.Pipeline``."""

    def __init__(self, sdk: SimpleNamespace, session: object, target: AwsTarget) -> None:
        self.sdk = sdk
        self.session = session
        self.target = target
        self.image = sdk.image_uris.retrieve("xgboost", target.region, XGBOOST_IMAGE_VERSION)
        self.parameters: dict[str, object] = {}
        self.steps: dict[str, object] = {}
        self.property_files: dict[tuple[str, str, str], object] = {}
        self.sent: dict[tuple[str, str], bool] = {}

    def compile(self, pipeline: dag.Pipeline, fixed: dict[str, str] | None = None) -> object:
        """The SDK pipeline. ``fixed`` gives the values (e.g. {"Objective": "binary:logistic"}; default: the
        defaults) that decide, when the definition is built, which conditional hyperparameters it sends (see
        ``dag.TrainingStep.sent_when``); each deciding parameter gets that value as its default and is
        restricted (EnumValues, checked by SageMaker when an execution starts) to the values that agree."""
        values = {**pipeline.defaults(), **(fixed or {})}
        # The InputData default on AWS is the staged iris CSV: the parameters describing the data default to iris's.
        values.update(data_parameters(values, set(fixed or {})))
        pipeline.validate(values)
        self.sent = {
            (step.name, hyperparameter): dag.sent(step, hyperparameter, values)
            for step in pipeline.steps if isinstance(step, dag.TrainingStep) for hyperparameter in step.sent_when
        }
        allowed = self.allowed_values(pipeline, values)
        for parameter in (*pipeline.parameters, *AWS_PARAMETERS):
            self.parameters[parameter.name] = self.parameter(parameter, values.get(parameter.name),
                                                             allowed.get(parameter.name))
        self.property_files = {
            (ref.step, ref.output, ref.file): self.sdk.properties.PropertyFile(
                name=f"{ref.step}{ref.output.title()}", output_name=ref.output, path=ref.file
            )
            for step in pipeline.steps
            for ref in dag.references(step)
            if isinstance(ref, dag.JsonGet)
        }
        # A condition takes its branches as built steps: build it after every other step.
        order = pipeline.order()
        for name in sorted(order, key=lambda n: isinstance(pipeline.step(n), dag.ConditionStep)):
            self.steps[name] = self.step(pipeline.step(name))
        branched = {n for s in pipeline.steps if isinstance(s, dag.ConditionStep) for n in (*s.if_steps, *s.else_steps)}
        return self.sdk.pipeline.Pipeline(
            name=pipeline.name,
            parameters=list(self.parameters.values()),
            steps=[self.steps[name] for name in order if name not in branched],
            sagemaker_session=self.session,
        )

    @staticmethod
    def allowed_values(pipeline: dag.Pipeline, values: dict) -> dict[str, list[str]]:
        """Per deciding parameter, its choices that send the same conditional hyperparameters as its value."""
        allowed: dict[str, list[str]] = {}
        for step in pipeline.steps:
            if not isinstance(step, dag.TrainingStep):
                continue
            for name, accepted in step.sent_when.values():
                agreeing = accepted if values[name] in accepted else tuple(
                    choice for choice in pipeline.parameter(name).choices if choice not in accepted)
                allowed[name] = [choice for choice in allowed.get(name, agreeing) if choice in agreeing]
        return allowed

    def parameter(self, parameter: dag.Parameter, value: object = None, enum: list[str] | None = None) -> object:
        kind = {"String": "ParameterString", "Integer": "ParameterInteger", "Float": "ParameterFloat"}
        default = parameter.default if value is None else value
        if parameter.name == "InputData" and not default:
            default = self.target.input_data_uri
        if parameter.name in ("ChampionModelData", "ChampionDataSchema") and not default:  # resolved at the start
            default = no_champion(self.target.bucket, self.target.prefix).uri
        options = {"enum_values": enum} if enum else {}
        return getattr(self.sdk.parameters, kind[parameter.type])(name=parameter.name, default_value=default,
                                                                  **options)

    def value(self, value: dag.Value, as_text: bool = False) -> object:
        """A declared value as the SDK takes it: a parameter, a step property, a JsonGet or a constant."""
        match value:
            case dag.Param(name):
                resolved = self.parameters[name]
                return resolved.to_string() if as_text and not isinstance(resolved.default_value, str) else resolved
            case dag.StepOutput(step, output):
                return self.output_uri(step, output)
            case dag.JsonGet(step, output, file, json_path):
                got = self.sdk.functions.JsonGet(
                    step_name=step, property_file=self.property_files[(step, output, file)], json_path=json_path
                )
                # The JSON value keeps its type (a number for num_class): a Std:Join makes it the text a
                # hyperparameter or an argument must be.
                return self.sdk.functions.Join(on="", values=[got]) if as_text else got
        return str(value) if as_text else value

    def output_uri(self, step: str, output: str) -> object:
        properties = self.steps[step].properties
        if output == "model":
            return properties.ModelArtifacts.S3ModelArtifacts
        return properties.ProcessingOutputConfig.Outputs[output].S3Output.S3Uri

    def execution_uri(self, *parts: str) -> object:
        """``s3://BUCKET/PREFIX/<execution id>/<parts>``: every execution writes below its own prefix."""
        execution_id = self.sdk.execution_variables.ExecutionVariables.PIPELINE_EXECUTION_ID
        root = f"s3://{self.target.bucket}/{self.target.prefix}/executions"
        return self.sdk.functions.Join(on="/", values=[root, execution_id, *parts])

    def step(self, step: dag.Step) -> object:
        match step:
            case dag.ProcessingStep():
                return self.processing_step(step)
            case dag.TrainingStep():
                return self.training_step(step)
            case dag.RegisterModelStep():
                return self.register_step(step)
            case dag.ConditionStep():
                return self.condition_step(step)
            case dag.FailStep():
                return self.sdk.fail_step.FailStep(
                    name=step.name,
                    error_message=self.sdk.functions.Join(on="", values=[self.value(p) for p in step.message]),
                )
        raise TypeError(f"not a step: {step!r}")

    def job_options(self, step: dag.ProcessingStep | dag.TrainingStep) -> dict:
        """Caching and retries, as declared: retried on service faults, throttling and job failures
        that are not the step's own (capacity, internal errors)."""
        retry = self.sdk.retry
        attempts = step.retry.max_attempts
        cache = self.sdk.steps.CacheConfig(enable_caching=step.cache, expire_after=CACHE_EXPIRY)
        options: dict = {"cache_config": cache}
        if attempts > 1:
            common = {"max_attempts": attempts, "interval_seconds": max(1, round(step.retry.interval_seconds)),
                      "backoff_rate": step.retry.backoff_rate}
            options["retry_policies"] = [
                retry.StepRetryPolicy(
                    exception_types=[retry.StepExceptionTypeEnum.SERVICE_FAULT, retry.StepExceptionTypeEnum.THROTTLING],
                    **common,
                ),
                retry.SageMakerJobStepRetryPolicy(
                    exception_types=[
                        retry.SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                        retry.SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                    ],
                    **common,
                ),
            ]
        return options

    def processing_step(self, step: dag.ProcessingStep) -> object:
        shapes = self.sdk.shapes
        processor = self.sdk.processing.ScriptProcessor(
            image_uri=self.image,
            command=["python3"],
            instance_type=self.parameters["ProcessingInstanceType"],
            instance_count=1,  # Preprocess splits the whole data set: N instances would each do the whole job
            role=self.target.role_arn,
            sagemaker_session=self.session,
            base_job_name=f"cloudviz-{step.name.lower()}",
        )
        arguments = processor.run(
            inputs=[
                shapes.ProcessingInput(
                    input_name=item.name,
                    # A ManifestFile input (the InputDataType parameter's value) needs LocalPath and S3InputMode
                    # as well in a pipeline (aws/sagemaker-python-sdk#2578): always given.
                    s3_input=shapes.ProcessingS3Input(
                        s3_uri=self.value(item.source), local_path=item.destination,
                        s3_data_type=self.value(item.data_type), s3_input_mode="File",
                    ),
                )
                for item in step.inputs
            ],
            outputs=[
                shapes.ProcessingOutput(
                    output_name=item.name,
                    s3_output=shapes.ProcessingS3Output(
                        s3_uri=self.execution_uri(step.name, item.name), local_path=item.source,
                        s3_upload_mode="EndOfJob",
                    ),
                )
                for item in step.outputs
            ],
            code=staged_code(step.code, self.target.bucket, self.target.prefix).uri,
            # None, not []: CreateProcessingJob's ContainerArguments has a minimum length of 1.
            arguments=[self.value(argument, as_text=True) for argument in step.arguments] or None,
        )
        property_files = [file for (name, _, _), file in self.property_files.items() if name == step.name]
        return self.sdk.steps.ProcessingStep(
            name=step.name, step_args=arguments, property_files=property_files or None, **self.job_options(step)
        )

    def training_step(self, step: dag.TrainingStep) -> object:
        configs = self.sdk.train_configs
        trainer = self.sdk.train.ModelTrainer(
            training_image=self.image,
            compute=self.sdk.Compute(
                instance_type=self.parameters["TrainingInstanceType"],
                instance_count=self.value(step.instance_count),
                volume_size_in_gb=self.parameters["TrainingVolumeSizeInGB"],
            ),
            # Strings only (CreateTrainingJob's HyperParameters map is string to string): a Std:Join for numbers.
            hyperparameters={name: self.value(value, as_text=True) for name, value in step.hyperparameters.items()
                             if self.sent.get((step.name, name), True)},
            input_data_config=[
                configs.InputData(
                    channel_name=channel,
                    data_source=self.sdk.shapes.S3DataSource(
                        s3_data_type="S3Prefix", s3_uri=self.value(source),
                        s3_data_distribution_type="ShardedByS3Key" if channel in step.sharded_channels
                        else "FullyReplicated",
                    ),
                    content_type=step.content_type,
                )
                for channel, source in step.channels.items()
            ],
            output_data_config=configs.OutputDataConfig(s3_output_path=self.execution_uri(step.name)),
            role=self.target.role_arn,
            sagemaker_session=self.session,
            base_job_name=f"cloudviz-{step.name.lower()}",
        )
        return self.sdk.steps.TrainingStep(name=step.name, step_args=trainer.train(), **self.job_options(step))

    def register_step(self, step: dag.RegisterModelStep) -> object:
        """The evaluation report goes along as the version's model statistics, the training data's baseline
        statistics as its data statistics (the AWS drift function's reference); the data schema as metadata."""
        functions, metrics = self.sdk.functions, self.sdk.metrics
        evaluation = functions.Join(on="/", values=[self.value(dag.StepOutput(step.metrics.step, step.metrics.output)),
                                                    step.metrics.file])
        schema = functions.Join(on="/", values=[self.value(step.data), "schema.json"])
        baseline = functions.Join(on="/", values=[self.value(step.baseline), "statistics.json"])
        builder = self.sdk.model_builder.ModelBuilder(
            s3_model_data_url=self.value(step.model),
            image_uri=self.image,
            role_arn=self.target.role_arn,
            sagemaker_session=self.session,
            # No environment: the SDK's default dependencies={"auto": True} adds SAGEMAKER_PROGRAM="" and
            # SAGEMAKER_SUBMIT_DIRECTORY="", and the XGBoost container serves a named user module (script mode)
            # whenever SAGEMAKER_PROGRAM is set, even empty. The official MLOps template registers none either.
            dependencies=None,
        )
        arguments = builder.register(
            model_package_group_name=self.value(step.model_package_group),
            approval_status=self.value(step.approval_status),
            content_types=CONTENT_TYPES,
            response_types=RESPONSE_TYPES,
            inference_instances=[self.parameters["InferenceInstanceType"]],
            transform_instances=[self.parameters["InferenceInstanceType"]],
            model_metrics=metrics.ModelMetrics(
                model_statistics=metrics.MetricsSource(content_type="application/json", s3_uri=evaluation),
                model_data_statistics=metrics.MetricsSource(content_type="application/json", s3_uri=baseline),
            ),
            # ChampionModelData: the model artifact the version was compared with (the no-champion object: none)
            customer_metadata_properties={"DataSchema": schema, **self.dataset_metadata(),
                                          "ChampionModelData": self.parameters["ChampionModelData"]},
            description="trained by the CloudViz pipeline",
        )
        return self.sdk.model_step.ModelStep(name=step.name, step_args=arguments)

    def dataset_metadata(self) -> dict[str, object]:
        """The run's DataSetVersion (``NAME@N``) as metadata of the version it registers. A metadata value must not
        be empty (CreateModelPackage): a trailing space keeps a run without a data set version ("") registering."""
        if "DataSetVersion" not in self.parameters:
            return {}
        return {"DataSetVersion": self.sdk.functions.Join(on="", values=[self.parameters["DataSetVersion"], " "])}

    def condition_step(self, step: dag.ConditionStep) -> object:
        conditions = self.sdk.conditions
        if step.comparison == "!=":
            condition = conditions.ConditionNot(
                expression=conditions.ConditionEquals(left=self.value(step.left), right=self.value(step.right))
            )
        else:
            condition = getattr(conditions, COMPARISONS[step.comparison])(
                left=self.value(step.left), right=self.value(step.right)
            )
        return self.sdk.condition_step.ConditionStep(
            name=step.name,
            conditions=[condition],
            if_steps=[self.steps[name] for name in step.if_steps],
            else_steps=[self.steps[name] for name in step.else_steps],
        )
