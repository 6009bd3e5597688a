"""`mixture_of_depths=convert|load`: Mixture-of-Depths (Raposo et al., 2024), refused with its reason.

Mixture-of-Depths lets a learnt router send only some tokens through every other decoder layer (the
rest skip it on the residual path), to spend less compute per token. The library for it, the
`mixture-of-depth` package (`MoD.apply_mod_to_hf` converts a transformers model,
`MoD.AutoMoDModelForCausalLM` loads a converted one; LLaMA-Factory's route), was written for
transformers 4 and does not work with transformers 5 (checked with its latest release, 1.2.0,
against transformers 5.24):

* `import MoD` fails: it imports `TRANSFORMERS_CACHE` from transformers, and its model files import
  `transformers.modeling_attn_mask_utils`; both were removed in transformers 5.
* Past the imports, its `MoD` layer wrapper expects transformers 4's decoder-layer call
  (`past_key_value` and `output_attentions` as positional arguments, a tuple returned), while
  transformers 5's models call their layers with keywords and take a tensor back:
  `TypeError: MoD.forward() missing 2 required positional arguments: 'past_key_value' and
  'output_attentions'` on the first forward pass of a converted Llama.

So the key fails at once, with the error the package itself raises, instead of a traceback after the
model and data were loaded. Re-implementing the method here would be our own untested copy of a
library's job; the key waits for a release that supports transformers 5.
"""

from __future__ import annotations

from sqltune.errors import ConfigError


def require_mixture_of_depths(mode: str) -> None:
    """Raise the one-line reason `mixture_of_depths=<mode>` cannot run with the installed libraries."""
    from importlib.metadata import PackageNotFoundError, version

    what = f"mixture_of_depths={mode}"
    try:
        import MoD  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name == "MoD":
            raise ConfigError(
                f"{what} needs the package mixture-of-depth (pip install 'sqltune[methods]')"
            ) from None
        failure: Exception = err
    except Exception as err:  # the package's own import errors under transformers 5
        failure = err
    else:
        failure = None
    try:
        release = version("mixture-of-depth")
    except PackageNotFoundError:
        release = "?"
    libraries = f"mixture-of-depth {release} with transformers {version('transformers')}"
    if failure is not None:
        reason = f"{type(failure).__name__}: {failure}".splitlines()[0]
        raise ConfigError(f"{what}: {libraries} does not work: import MoD fails ({reason})")
    raise ConfigError(
        f"{what}: {libraries} imports, but no release was found to work with transformers 5 when "
        "sqltune was checked, so no route to it exists (docs/training.md)"
    )
