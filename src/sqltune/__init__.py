"""sqltune: turn an open LLM into a Text-to-SQL model and prove how good it is."""

import logging

__version__ = "0.1.0"

# bitsandbytes (imported by peft whenever it is installed, e.g. as a dependency of galore-torch)
# warns at every import, on CPUs with AVX512-BF16, that an optional kernel package from the model hub
# is missing. sqltune never fetches it (nothing is downloaded at run time) and runs no 4-bit kernel
# on a CPU, so the line is only noise on every command.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
