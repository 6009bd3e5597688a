"""The transformers engine: batching must not change answers, stops early, ranks candidates."""

import functools

import torch

from sqltune.args import GeneratingArguments, ModelArguments
from sqltune.infer.engine import model_source, open_engine
from sqltune.infer.hf import ChosenTokenLogprobs

QUESTIONS = [
    "How many singers are there?",
    "List song titles",
    "What is the highest ticket price of all concerts in the stadium?",
    "Show concert names",
    "Which stadium has the largest capacity and which singers sang there in 2014?",
    "age",
    "List the names of singers from France.",
]


def engine_and_prompts(model_dir, batch_size):
    source = model_source(None, ModelArguments(model_name_or_path=str(model_dir)))
    engine = open_engine(source, dtype="float32", batch_size=batch_size)
    prompts = [engine.tokenizer(q, add_special_tokens=False)["input_ids"] for q in QUESTIONS]
    return engine, prompts


def one_at_a_time(engine, prompt, max_new_tokens, **options):
    output = engine.model.generate(
        torch.tensor([prompt]),
        max_new_tokens=max_new_tokens,
        eos_token_id=engine.stop_ids,
        pad_token_id=engine.pad_id,
        **options,
    )
    return output[:, len(prompt) :].tolist()


def counting_forward(model, monkeypatch) -> list[tuple[int, int]]:
    """Record (rows, tokens) of every forward pass of `model`."""
    computed = []
    forward = model.forward

    @functools.wraps(forward)  # generate reads the signature to know which inputs the model takes
    def counting(input_ids=None, **options):
        computed.append(tuple(input_ids.shape))
        return forward(input_ids=input_ids, **options)

    monkeypatch.setattr(model, "forward", counting)
    return computed


def answers_by_index(batches) -> dict:
    return {i: group[0] for b in batches for i, group in zip(b.indices, b.candidates)}


def test_batched_answers_equal_one_at_a_time_answers(diverse_model_dir):
    engine, prompts = engine_and_prompts(diverse_model_dir, batch_size=3)
    batches = list(engine.generate(prompts, GeneratingArguments(max_new_tokens=12)))
    assert [len(b.indices) for b in batches] == [3, 3, 1]
    answers = answers_by_index(batches)
    assert sorted(answers) == list(range(len(prompts)))
    for index, prompt in enumerate(prompts):
        (tokens,) = one_at_a_time(engine, prompt, 12, do_sample=False)
        length = engine.answer_length(tokens)
        assert answers[index].new_tokens == length, QUESTIONS[index]
        assert answers[index].text == engine.tokenizer.decode(tokens[:length], skip_special_tokens=True)
    assert any(a.new_tokens < 12 for a in answers.values())  # some answers stopped at the EOS token
    assert len({a.text for a in answers.values()}) > 3
    settings = GeneratingArguments(max_new_tokens=12, repetition_penalty=1.3)  # a logits processor too
    answers = answers_by_index(engine.generate(prompts, settings))
    for index, prompt in enumerate(prompts):
        (tokens,) = one_at_a_time(engine, prompt, 12, do_sample=False, repetition_penalty=1.3)
        length = engine.answer_length(tokens)
        assert answers[index].text == engine.tokenizer.decode(tokens[:length], skip_special_tokens=True)


def test_a_shared_prompt_prefix_is_computed_once_without_changing_answers(diverse_model_dir, monkeypatch):
    engine, prompts = engine_and_prompts(diverse_model_dir, batch_size=4)
    schema = engine.tokenizer(" ".join(QUESTIONS * 3), add_special_tokens=False)["input_ids"]
    shared = [schema + p for p in prompts]  # one long instruction + schema, then each question
    computed = counting_forward(engine.model, monkeypatch)  # prefill and decoding
    answers = answers_by_index(engine.generate(shared, GeneratingArguments(max_new_tokens=10)))
    prefix_passes = [shape for shape in computed if shape[0] == 1 and shape[1] >= len(schema)]
    assert len(prefix_passes) == 2  # the schema once per batch, not once per row
    assert max(shape[0] * shape[1] for shape in computed) < 4 * len(schema)
    for index, prompt in enumerate(shared):
        (tokens,) = one_at_a_time(engine, prompt, 10, do_sample=False)
        length = engine.answer_length(tokens)
        assert answers[index].text == engine.tokenizer.decode(tokens[:length], skip_special_tokens=True)
    beams = answers_by_index(engine.generate(shared[:2], GeneratingArguments(max_new_tokens=6, num_beams=3)))
    for index, prompt in enumerate(shared[:2]):
        (tokens,) = one_at_a_time(engine, prompt, 6, num_beams=3, do_sample=False)
        assert beams[index].text == engine.tokenizer.decode(
            tokens[: engine.answer_length(tokens)], skip_special_tokens=True
        )


def test_generation_stops_at_template_stop_tokens(diverse_model_dir):
    engine, prompts = engine_and_prompts(diverse_model_dir, batch_size=8)
    firsts = [one_at_a_time(engine, p, 1, do_sample=False)[0][0] for p in prompts]
    engine.stop_ids = [*engine.stop_ids, *firsts]  # every answer's first token now ends it
    batches = engine.generate(prompts, GeneratingArguments(max_new_tokens=30))
    assert all(group[0].new_tokens == 1 for batch in batches for group in batch.candidates)


def test_beam_candidates_come_best_first(diverse_model_dir):
    engine, prompts = engine_and_prompts(diverse_model_dir, batch_size=4)
    batches = list(engine.generate(prompts[:4], GeneratingArguments(max_new_tokens=8), candidates=3))
    groups = {i: g for b in batches for i, g in zip(b.indices, b.candidates)}
    for index in range(4):
        beams = one_at_a_time(engine, prompts[index], 8, num_beams=3, num_return_sequences=3, do_sample=False)
        expected = [
            engine.tokenizer.decode(t[: engine.answer_length(t)], skip_special_tokens=True) for t in beams
        ]
        assert [c.text for c in groups[index]] == expected


def test_sampled_candidates_are_ranked_by_their_log_probability(diverse_model_dir):
    engine, prompts = engine_and_prompts(diverse_model_dir, batch_size=4)
    settings = GeneratingArguments(max_new_tokens=8, do_sample=True, temperature=1.5, top_k=0, top_p=1.0)
    batches = list(engine.generate(prompts[:2], settings, candidates=5))
    for group in (g for batch in batches for g in batch.candidates):
        assert len(group) == 5 and all(c.logprob is not None and c.logprob < 0 for c in group)
        assert [c.logprob for c in group] == sorted((c.logprob for c in group), reverse=True)
        assert len({c.text for c in group}) > 1


def test_recorded_log_probabilities_match_a_forward_pass(diverse_model_dir):
    engine, prompts = engine_and_prompts(diverse_model_dir, batch_size=1)
    prompt = torch.tensor([prompts[0]] * 3)
    recorder = ChosenTokenLogprobs()
    torch.manual_seed(1)
    output = engine.model.generate(
        prompt,
        do_sample=True,
        top_k=0,
        temperature=2.0,
        max_new_tokens=6,
        logits_processor=[recorder],
        pad_token_id=engine.pad_id,
    )
    new = output[:, prompt.shape[1] :]
    with torch.no_grad():
        logits = engine.model(output).logits[:, prompt.shape[1] - 1 : -1]
    expected = logits.log_softmax(-1).gather(2, new.unsqueeze(-1)).squeeze(-1)
    recorded = recorder.per_token(new)
    for row in range(3):  # compare up to the row's end (tokens after an EOS are padding)
        length = engine.answer_length(new[row].tolist())
        assert length > 1
        assert torch.allclose(recorded[row, :length], expected[row, :length], atol=1e-4)
