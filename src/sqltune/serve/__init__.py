"""`sqltune serve`: the model behind an HTTP API.

* `app`: the FastAPI application (OpenAI-shaped `/v1/models`, `/v1/chat/completions`, and the
  Text-to-SQL endpoints `/v1/databases`, `/v1/sql`), with `auth` and the OpenAI error shape.
* `batching`: the queue that gathers concurrent requests into batches for one worker thread.
* `worker`: everything that touches the model or its tokenizer, run on that thread.
* `chat`, `databases`, `schemas`: messages to prompts, the served databases, the wire shapes.
* `command`: `main(argv)`, which parses `ServeArguments` and runs uvicorn.

FastAPI, uvicorn and sse-starlette are imported only here (`pip install 'sqltune[serve]'`); the rest
of sqltune never needs them. The package calls the steps (`sqltune.infer.ask.Asker`, `sqltune.db`);
nothing calls back into it.
"""
