"""The ONNX backend: an exported generator (decoder with KV cache, int8 or int4 weights) run by ONNX Runtime
GenAI, which keeps the KV cache in place between tokens instead of copying it through Python.

Tokenization and the loop (cnai.generate.decode) are ours, not onnxruntime-genai's, so the token ids that go
in and the way a call stops are the same as the transformers reference: only the next-token step differs.
Greedy decoding asks onnxruntime-genai for no sampling; sampling uses its top-k 50 / top-p / temperature
with the request's seed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnai.errors import ArtifactError
from cnai.generate.artifact import CARD_FILE, GeneratorCard, read_generator_card
from cnai.generate.decode import TOP_K, LocalGenerator, TextCodec
from cnai.generate.params import GenerationParams
from cnai.host import host_threads
from cnai.model.identity import ModelId

GENAI_CONFIG = "genai_config.json"


class OnnxGenerator(LocalGenerator):
    def __init__(self, directory: str | Path, identity: ModelId, threads: int | None = None) -> None:
        import onnxruntime_genai as og

        root = Path(directory)
        config_path = root / GENAI_CONFIG
        if not config_path.is_file():
            raise ArtifactError(f"{config_path}: missing; not an exported generator")
        self._identity = identity
        # the artifact's card (verified by whoever loaded the folder), for GET /v1/models/{name}; None without one
        self.card: GeneratorCard | None = (
            read_generator_card(root, verify=False) if (root / CARD_FILE).is_file() else None
        )
        self._og = og
        config = og.Config(str(root))
        config.clear_providers()  # CPU: the Lambda and SageMaker Serverless have no accelerator
        # Every CPU the process may use unless told otherwise: left unset, onnxruntime-genai ran the decoder on
        # one core of two (user time = wall time; models/augment.py generated 1.28 prompts/s, 1.80 with 2).
        options = {"intra_op_num_threads": threads or host_threads(), "inter_op_num_threads": 1}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self.model = og.Model(config)
        self.codec = TextCodec.from_file(root / "tokenizer.json")
        genai = json.loads(config_path.read_text(encoding="utf-8"))
        self.context_length = int(genai["model"].get("context_length", 2048))

    def _steps(self, ids: list[int], params: GenerationParams) -> Iterator[int]:
        og = self._og
        search: dict[str, Any] = {"max_length": len(ids) + params.max_new_tokens, "do_sample": not params.greedy}
        if not params.greedy:
            search.update(temperature=params.temperature, top_p=params.top_p, top_k=TOP_K)
            if params.seed is not None:
                search["random_seed"] = params.seed
        gen_params = og.GeneratorParams(self.model)
        gen_params.set_search_options(**search)
        generator = og.Generator(self.model, gen_params)
        generator.append_tokens(ids)
        while not generator.is_done():
            generator.generate_next_token()
            yield int(generator.get_next_tokens()[0])
