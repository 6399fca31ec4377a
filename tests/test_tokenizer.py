"""The CLIP tokenizer against open_clip's golden ids (shared/reference/golden/tokenizer.jsonl)."""
from __future__ import annotations

import json
import random
import time

import pytest
import regex
import torch

from mc2export.errors import UserError
from mc2export.tokenizer import Tokenizer, clean_text, get_tokenizer, tokenize

SOT, EOT = 49406, 49407


@pytest.fixture(scope="module")
def golden(reference):
    path = reference / "golden" / "tokenizer.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == 300
    return rows


@pytest.fixture(scope="module")
def tok():
    return Tokenizer()


def test_golden_ids_exact(golden, tok):
    out = tok([g["text"] for g in golden])
    assert out.dtype == torch.long and out.shape == (300, 77)
    mismatches = [g["text"] for g, row in zip(golden, out.tolist()) if row != g["ids"]]
    assert mismatches == [], f"{len(mismatches)} mismatching strings, e.g. {mismatches[:3]!r}"


def test_golden_counts_and_cleaning(golden, tok):
    bad_n = [g["text"] for g in golden if tok.n_tokens(g["text"]) != g["n_ids_untruncated"]]
    bad_clean = [g["text"] for g in golden if clean_text(g["text"]) != g["clean"]]
    assert bad_n == [] and bad_clean == []


def test_module_level_tokenize(golden):
    assert get_tokenizer() is get_tokenizer()
    texts = [g["text"] for g in golden[:20]]
    assert tokenize(texts).tolist() == [g["ids"] for g in golden[:20]]
    one = tokenize(golden[0]["text"])
    assert one.shape == (1, 77) and one[0].tolist() == golden[0]["ids"]


def test_properties(tok):
    assert (tok.sot_token_id, tok.eot_token_id, tok.vocab_size) == (SOT, EOT, 49408)


def test_truncation(golden, tok):
    by_len = {g["n_ids_untruncated"]: g for g in golden if g["text"].startswith("cat cat")}
    row76, row77, row78 = (tok(by_len[n]["text"])[0].tolist() for n in (76, 77, 78))
    assert row76[75] == EOT and row76[76] == 0
    assert row77[76] == EOT and EOT not in row77[:76]
    assert row78[76] == EOT and EOT not in row78[:76]
    long_idx = [i for i, g in enumerate(golden) if g["n_ids_untruncated"] > 77]
    assert len(long_idx) == 9
    assert tok.truncated([g["text"] for g in golden]) == long_idx
    for i in long_idx:
        row = tok(golden[i]["text"])[0].tolist()
        assert row[76] == EOT and row[:76] == golden[i]["ids"][:76]
    # other context lengths: prefix of the full row, EOT forced into the last slot
    text = golden[1]["text"]
    full = [SOT, *tok.encode(text), EOT]
    short = tok(text, context_length=8)[0].tolist()
    assert short == full[:7] + [EOT]
    assert tok(text, context_length=len(full))[0].tolist() == full
    assert tok.truncated([text, "a cat"], context_length=8) == [0]
    assert tok("", context_length=2)[0].tolist() == [SOT, EOT]
    assert tok("a cat", context_length=2)[0].tolist() == [SOT, EOT]


def test_special_strings_and_decode(tok):
    ids = tok.encode("a <start_of_text> b <END_OF_TEXT>")
    assert SOT in ids and EOT in ids
    assert tok.decode(tok.encode("A photo of a cat!")) == "a photo of a cat ! "
    row = tok("naïve café 日本")[0]
    assert tok.decode(row, skip_special_tokens=True) == "naïve café 日本 "
    assert tok.decode(row[:3]).startswith("<start_of_text>")
    assert tok([]).shape == (0, 77)


@pytest.mark.parametrize("bad", [1, 0, -5, "77", 7.0, True])
def test_bad_context_length(tok, bad):
    with pytest.raises(UserError) as err:
        tok("a cat", context_length=bad)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError):
        tokenize("a cat", context_length=bad)


@pytest.mark.parametrize("bad", [None, 5, b"bytes", ["ok", 3], {"a": 1}])
def test_non_str_input(tok, bad):
    with pytest.raises(UserError) as err:
        tok(bad)
    assert "\n" not in str(err.value)


def test_decode_rejects_unknown_id(tok):
    with pytest.raises(UserError):
        tok.decode([49408])


def test_speed_1000_captions(golden):
    t = Tokenizer()
    t("warm up the vocabulary")
    words = " ".join(g["clean"] for g in golden[:150]).split()
    rng = random.Random(0)
    captions = [" ".join(rng.choices(words, k=rng.randint(5, 25))) + f" #{i}" for i in range(1000)]
    start = time.perf_counter()
    out = t(captions)
    elapsed = time.perf_counter() - start
    assert out.shape == (1000, 77)
    assert elapsed < 1.0, f"1000 captions took {elapsed:.3f} s"


# -- export_vocab: a tiny independent reader of vocab.json + merges.txt ---------------------------------

def _gpt2_bytes_to_unicode() -> dict[int, str]:
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table, n = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


class _FileReader:
    PAT = regex.compile(
        r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", regex.IGNORECASE
    )

    def __init__(self, vocab_path, merges_path):
        self.vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        lines = merges_path.read_text(encoding="utf-8").split("\n")
        assert lines[0] == "#version: 0.2"
        pairs = [tuple(line.split(" ")) for line in lines[1:] if line]
        self.rank = {p: i for i, p in enumerate(pairs)}
        self.bytes = _gpt2_bytes_to_unicode()

    def bpe(self, word):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while True:
            cands = [p for p in zip(parts, parts[1:]) if p in self.rank]
            if not cands:
                return parts
            a, b = min(cands, key=self.rank.__getitem__)
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out

    def ids(self, clean: str):
        out = [self.vocab["<start_of_text>"]]
        for piece in self.PAT.findall(clean):
            if piece in ("<start_of_text>", "<end_of_text>"):
                out.append(self.vocab[piece])
                continue
            word = "".join(self.bytes[b] for b in piece.encode("utf-8"))
            out.extend(self.vocab[s] for s in self.bpe(word))
        out.append(self.vocab["<end_of_text>"])
        if len(out) > 77:
            out = out[:76] + [self.vocab["<end_of_text>"]]
        return out + [0] * (77 - len(out))


def test_export_vocab_round_trip(tmp_path, golden, tok):
    folder = tmp_path / "tok" / "out"
    paths = tok.export_vocab(folder)
    assert set(paths) == {"vocab", "merges"}
    assert sorted(p.name for p in folder.iterdir()) == ["merges.txt", "vocab.json"]  # no temp files left
    vocab = json.loads(paths["vocab"].read_text(encoding="utf-8"))
    assert len(vocab) == 49408 and sorted(vocab.values()) == list(range(49408))
    assert vocab["<start_of_text>"] == SOT and vocab["<end_of_text>"] == EOT
    merges = paths["merges"].read_text(encoding="utf-8").split("\n")
    assert merges[0] == "#version: 0.2" and len([m for m in merges[1:] if m]) == 48894
    reader = _FileReader(paths["vocab"], paths["merges"])
    mismatches = [g["text"] for g in golden if reader.ids(g["clean"]) != g["ids"]]
    assert mismatches == []
    # a second export overwrites in place
    again = tok.export_vocab(folder)
    assert again["vocab"].read_bytes() == paths["vocab"].read_bytes()
