"""Report tokenizers, loaded from local files only (nothing is ever fetched from a hub)."""

from __future__ import annotations

import os

import transformers

from data_pipelines.synthetic_cxr import report

SYNTHETIC = "synthetic"
# BERT's special tokens; [PAD] must be id 0, which padding and attention masks assume.
_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def write_synthetic_vocab(cache_dir: str) -> str:
    """Writes a BERT `vocab.txt` covering every synthetic-report token; returns its path."""
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, "vocab.txt")
    tmp = f"{path}.{os.getpid()}.tmp"  # atomic: several processes may write it at once
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(_SPECIAL_TOKENS + tuple(report.vocabulary())) + "\n")
    os.replace(tmp, path)
    return path


def load_tokenizer(spec: str, cache_dir: str) -> transformers.PreTrainedTokenizerFast:
    """A fast tokenizer: `spec="synthetic"`, or a local directory with a saved tokenizer.

    The synthetic vocabulary is a whole-word WordPiece vocabulary, so synthetic reports
    tokenise with no [UNK]; it is written to `cache_dir`. A directory (e.g. a local copy
    of Bio_ClinicalBERT) is loaded with `local_files_only=True`.
    """
    if spec == SYNTHETIC:
        write_synthetic_vocab(cache_dir)
        # Loading the directory, rather than `BertTokenizerFast(vocab_file=...)`, works in
        # transformers 4 and 5 alike (5 ignores `vocab_file` and keeps an empty vocabulary).
        return transformers.BertTokenizerFast.from_pretrained(
            cache_dir, do_lower_case=True, model_max_length=512, local_files_only=True
        )
    if not os.path.isdir(spec):
        raise FileNotFoundError(
            f"Tokenizer directory {spec!r} does not exist; give a local directory holding a "
            f"saved tokenizer (e.g. tokenizer.json or vocab.txt), or {SYNTHETIC!r}."
        )
    return transformers.AutoTokenizer.from_pretrained(spec, local_files_only=True)
