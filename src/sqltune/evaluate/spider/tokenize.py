"""Tokenising SQL the way the official Spider parser does, without nltk or its downloaded data.

The official `process_sql.tokenize` turns every `'` into `"`, cuts each pair of double quotes out as
one string token, runs nltk's `word_tokenize` over the rest, lower-cases every word token and glues
`!`, `>` and `<` back onto a following `=`. `word_tokenize` first splits the text into sentences with
the Punkt model (the `punkt` download that fails offline) and then applies nltk's improved Treebank
rules to each sentence. Neither step is a library call we can make without the download, so both
are written here (nothing else does this job). The Treebank rules are reproduced as regular
expressions; Punkt is reduced to the one decision that can change SQL tokens: whether a word that
ends in a period closes a sentence, because the last period of a sentence is split off ("5." becomes
"5", "."). Rules that need a quote character are left out: no `'` or `"` is left when they would run.
"""

from __future__ import annotations

import re


class ParseError(ValueError):
    """The official parser would reject this SQL (it raised; here it is one named error)."""


# --- Punkt, reduced ---------------------------------------------------------------------------------
# Characters that end a word for Punkt and may directly follow a sentence end.
_NON_WORD = "[)\";}\\]*:@'({\\[\u2018\u2019\u201c\u201d\xab\xbb?!]"
_END_CANDIDATE = re.compile(r"[.?!](?=(?P<after>" + _NON_WORD + r"|\s+(?P<next>\S+)))")
# A Punkt word stops before these; the period-final word is what follows the last of them.
_PUNKT_SPLIT = re.compile(r"[(\"`{\[:;&#*@)}\]\-,]")
_NUMERIC = re.compile(r"^-?[.,]?\d[\d,.-]*\.?$")
_INITIAL = re.compile(r"^[^\W\d]\.$")
_REALIGN = re.compile("[\"')\\]}\u2018\u2019\u201c\u201d\xab\xbb]+?(?:\\s+|(?=--)|$)")
_SENTENCE_INTERNAL = set(";:,.!?")
# Words that Punkt's English model knows as abbreviations: a period after them ends no sentence.
_ABBREVIATION_LIST = """
    a.a a.c a.d a.g a.h a.m a.m.e a.s a.t adm ala ariz aug ave b.f b.v bros c c.i.t c.o.m.b c.v calif
    chg cie co col colo conn corp cos ct d d.c d.h d.w dec dr e e.f e.h e.l e.m f f.g f.j feb fla fri
    ft g g.d g.f g.k ga gen h h.c h.f h.m i.m.s ill inc j.b j.c j.j j.k j.p j.r jan jr k kan ky l l.a
    l.f l.p lt ltd m m.b.a m.d.c m.j maj messrs mg mich minn mr mrs ms n n.c n.d n.h n.j n.m n.v n.y
    nev nov oct ok okla ore p p.a.m p.m pa ph.d prof r r.a r.h r.i r.j r.k r.t rep reps s s.a s.a.y s.c
    s.g s.p.a s.s sen sep sept sr st sw t t.j tenn tues u.k u.n u.s u.s.a u.s.s.r v va vs vt w w.c w.r
    w.va w.w wash wed wis yr
"""
_ABBREVIATIONS = frozenset(_ABBREVIATION_LIST.split())


def _closes_sentence(text: str, match: re.Match) -> bool:
    """Would Punkt end a sentence at this '.', '?' or '!'?

    '?' and '!' always do. A word ending in one period does, unless it is a known abbreviation, or a
    number or an initial followed by lower-case text or internal punctuation (Punkt's orthographic
    heuristic, with the word statistics of its English model replaced by the case of the next
    word). An ellipsis does not. Punkt can still end a sentence after an abbreviation when the next
    word looks like a sentence start; that refinement needs the model's statistics and is left out.
    """
    if match.group() != ".":
        return True
    start = match.start()
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start : match.end()]
    word = _PUNKT_SPLIT.split(word)[-1]
    if word.endswith("..") or _is_abbreviation(word[:-1].lower()):
        return False
    if _NUMERIC.match(word.lower()) or _INITIAL.match(word):
        follower = match.group("next") or match.group("after")
        return not (follower[0] in _SENTENCE_INTERNAL or follower[0].islower())
    return True


def _is_abbreviation(word: str) -> bool:
    return word in _ABBREVIATIONS or word.split("-")[-1] in _ABBREVIATIONS


def sentences(text: str) -> list[str]:
    """Split text into sentences at the places Punkt would, moving closing brackets back."""
    slices: list[tuple[int, int]] = []
    last = 0
    for match in _END_CANDIDATE.finditer(text):
        if match.start() < last or not _closes_sentence(text, match):
            continue
        slices.append((last, match.end()))
        last = match.start("next") if match.group("next") else match.end()
    slices.append((last, len(text.rstrip())))
    out: list[str] = []
    shift = 0
    for i, (start, stop) in enumerate(slices):
        start += shift
        shift = 0
        if i + 1 < len(slices):
            nxt_start, nxt_stop = slices[i + 1]
            realign = _REALIGN.match(text, nxt_start, nxt_stop)
            if realign:
                stop = nxt_start + len(realign.group().rstrip())
                shift = realign.end() - nxt_start
        if text[start:stop]:
            out.append(text[start:stop])
    return out


# --- Treebank rules (nltk's NLTKWordTokenizer), in order ----------------------------------------------
_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile("([\xab\u201c\u2018\u201e]|[`]+)"), r" \1 "),
    (re.compile(r"(``)"), r" \1 "),
    (re.compile("([^.])(\\.)([\\])}>\"'\xbb\u201d\u2019 ]*)\\s*$"), r"\1 \2 \3 "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}"), r" \g<0> "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile("[\u2012-\u2015]"), r" \g<0> "),
    (re.compile("([^.])(\\.)([\\])}>\"']*)\\s*$"), r"\1 \2\3 "),
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"[*]"), r" \g<0> "),
    (re.compile(r"[\]\[(){}<>]"), r" \g<0> "),
    (re.compile(r"--"), r" -- "),
    (re.compile("([\xbb\u201d\u2019])"), r" \1 "),
]
_CONTRACTIONS = [
    re.compile(pattern)
    for pattern in (
        r"(?i)\b(can)(not)\b",
        r"(?i)\b(gim)(me)\b",
        r"(?i)\b(gon)(na)\b",
        r"(?i)\b(got)(ta)\b",
        r"(?i)\b(lem)(me)\b",
        r"(?i)\b(wan)(na)(?=\s)",
    )
]


def word_tokenize(text: str) -> list[str]:
    """nltk's `word_tokenize` for quote-free text: Punkt sentences, then Treebank words."""
    tokens: list[str] = []
    for sentence in sentences(text):
        for pattern, replacement in _RULES:
            sentence = pattern.sub(replacement, sentence)
        sentence = f" {sentence} "
        for pattern in _CONTRACTIONS:
            sentence = pattern.sub(r" \1 \2 ", sentence)
        tokens.extend(sentence.split())
    return tokens


# --- process_sql.tokenize ---------------------------------------------------------------------------
def tokenize(sql: str) -> list[str]:
    """The official parser's tokens: lower-cased words, string literals kept whole in double quotes.

    Raises ParseError for an odd number of quote characters, as the official assertion does.
    """
    text = sql.replace("'", '"')
    quotes = [i for i, char in enumerate(text) if char == '"']
    if len(quotes) % 2:
        raise ParseError("unexpected quote")
    strings: dict[str, str] = {}
    # Pairs are taken from the end, so a key's offsets stay valid while earlier text is replaced.
    for k in range(len(quotes) - 1, 0, -2):
        first, last = quotes[k - 1], quotes[k]
        key = f"__val_{first}_{last}__"
        strings[key] = text[first : last + 1]
        text = text[:first] + key + text[last + 1 :]
    tokens = [strings.get(word.lower(), word.lower()) for word in word_tokenize(text)]
    # Glue '!=' '>=' '<=' back together, right to left as the official loop does.
    for i in reversed([i for i, tok in enumerate(tokens) if tok == "="]):
        before = tokens[i - 1]  # i == 0 reads the last token, exactly like the original indexing
        if before in ("!", ">", "<"):
            tokens = tokens[: i - 1] + [before + "="] + tokens[i + 1 :]
    return tokens
