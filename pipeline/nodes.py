"""Node ids of the pipeline, declared once (TFX-free, so the summary and the report import them cheaply)."""


class Nodes:
    """Node ids of the pipeline (MLMD contexts, artifact folders, the run summary and the benchmarks)."""

    EXAMPLE_GEN = "EventExampleGen"
    STATISTICS_GEN = "StatisticsGen"
    SCHEMA_GEN = "ImportSchemaGen"
    EXAMPLE_VALIDATOR = "ExampleValidator"
    WINDOWING = "HistoryWindowing"
    TRANSFORM = "Transform"
    LATEST_BLESSED_MODEL = "latest_blessed_model_resolver"
    TRAINER = "Trainer"
    EVALUATOR = "Evaluator"
    TEST_EVALUATOR = "test_evaluator"
    PUSHER = "TFLitePusher"
    DATA_STAGES = (EXAMPLE_GEN, STATISTICS_GEN, SCHEMA_GEN, EXAMPLE_VALIDATOR, WINDOWING, TRANSFORM)
