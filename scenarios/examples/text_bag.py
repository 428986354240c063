"""Example user code: a tiny multi-input int64 text classifier (embedding bag) and its data.

Not part of the harness: this is what a user writes for `scenarios/text_classifier.yaml`
(`python:examples.text_bag:load` for the data, `python:examples.text_bag:make_model` for the model).

The task is real text that ships with Python itself, so nothing is downloaded: the first sentence
of the docstring of every public function, class and method of some standard-library modules,
labelled with the topic of the module it came from (four groups, below). A sentence found under
two groups is dropped, as are repeats within a group and sentences of fewer than three words.
The texts depend on the Python build (3.11 here) and are read in a fixed order, so the data, the
split and the trained weights are the same on every call.

Words are lower-cased alphanumeric runs, mapped to ids 1..VOCAB_BUCKETS-1 with zlib.crc32 (stable
across processes, unlike hash()); id 0 pads every text to SEQUENCE_LENGTH tokens. The model takes
two int64 inputs, `input_ids` and `attention_mask`, both [SEQUENCE_LENGTH]: the mean of the word
embeddings over the real tokens, one hidden layer, four logits.
"""

# user code that defines nn.Module subclasses: torch is imported at module level on purpose
# ruff: noqa: TID253

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import nn

from examples.training import fit_minibatches, save_trained
from examples.weights_cache import CachedWeights, cached_model

# topic -> the standard-library modules whose docstrings it takes
GROUPS: dict[str, tuple[str, ...]] = {
    "filesystem_os": (
        "os", "os.path", "shutil", "pathlib", "tempfile", "glob", "fnmatch", "stat", "filecmp", "io",
        "zipfile", "tarfile", "subprocess", "signal", "fileinput", "gzip", "bz2", "lzma", "shelve",
        "sysconfig", "platform", "getpass", "pty", "zipimport", "pkgutil", "linecache", "compileall",
    ),
    "text_formats": (
        "string", "textwrap", "json", "csv", "html", "html.parser", "xml.etree.ElementTree",
        "xml.dom.minidom", "xml.dom.pulldom", "xml.sax", "xml.sax.saxutils", "xml.sax.handler",
        "xml.sax.xmlreader", "re", "difflib", "configparser", "tomllib", "plistlib", "unicodedata",
        "codecs", "locale", "shlex", "pprint", "base64", "binascii", "quopri", "tokenize",
    ),
    "networking_web": (
        "http.client", "http.server", "http.cookies", "http.cookiejar", "urllib.request",
        "urllib.parse", "urllib.error", "urllib.robotparser", "email.message", "email.parser",
        "email.utils", "email.header", "email.policy", "email.generator", "email.headerregistry",
        "socket", "smtplib", "ssl", "ftplib", "poplib", "imaplib", "socketserver", "ipaddress",
        "mimetypes", "wsgiref.simple_server", "wsgiref.handlers", "selectors",
    ),
    "math_data": (
        "math", "cmath", "statistics", "fractions", "decimal", "random", "collections", "itertools",
        "functools", "operator", "heapq", "bisect", "numbers", "datetime", "calendar", "secrets",
        "_pydecimal", "colorsys", "graphlib", "queue", "copy", "enum", "dataclasses", "_collections_abc",
    ),
}  # fmt: skip
CLASS_NAMES: tuple[str, ...] = tuple(sorted(GROUPS))  # label i is CLASS_NAMES[i]
SEQUENCE_LENGTH = 32
VOCAB_BUCKETS = 8192
MIN_WORDS = 3
SEED = 0
TEST_FRACTION = 0.25

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(.+?[.!?])(?:\s|$)")


@dataclass(frozen=True)
class TrainConfig:
    """Architecture and training settings; all of it goes into the weights' cache key."""

    embedding_dim: int = 64
    hidden: int = 64
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-2
    seed: int = SEED


# ---- data -------------------------------------------------------------------------------------


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ").strip()
    match = _SENTENCE_END.match(paragraph)
    return (match.group(1) if match else paragraph).strip()


def module_sentences(module_name: str) -> list[str]:
    """First docstring sentences of a module's public functions and classes and their public
    methods, read from its source file with `ast`, never by importing it: what an imported module
    holds depends on what else the process imported or patched (gevent replaces socket's classes),
    and the data must not. Modules without Python source (math, array) give nothing."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found: list[str] = []
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in tree.body:
        if not isinstance(node, definitions) or node.name.startswith("_"):
            continue
        members = node.body if isinstance(node, ast.ClassDef) else []
        for item in (node, *members):
            if isinstance(item, definitions) and not item.name.startswith("_"):
                doc = ast.get_docstring(item)
                if doc and doc.strip():
                    found.append(first_sentence(doc))
    return found


@functools.cache
def corpus() -> tuple[tuple[str, ...], np.ndarray]:
    """(texts, int64 labels), sorted by text; sentences found under two topics are left out."""
    topics: dict[str, set[str]] = {}
    for topic, modules in GROUPS.items():
        for module_name in modules:
            for sentence in module_sentences(module_name):
                topics.setdefault(sentence, set()).add(topic)
    kept = sorted(
        (text, CLASS_NAMES.index(next(iter(found))))
        for text, found in topics.items()
        if len(found) == 1 and len(tokenize(text)) >= MIN_WORDS
    )
    return tuple(text for text, _ in kept), np.array([label for _, label in kept], dtype=np.int64)


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def token_id(word: str) -> int:
    """A stable id in 1..VOCAB_BUCKETS-1 (0 is padding)."""
    return zlib.crc32(word.encode("utf-8")) % (VOCAB_BUCKETS - 1) + 1


def encode(texts: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
    """`input_ids` and `attention_mask`, int64 [n, SEQUENCE_LENGTH]; longer texts are cut."""
    ids = np.zeros((len(texts), SEQUENCE_LENGTH), dtype=np.int64)
    mask = np.zeros((len(texts), SEQUENCE_LENGTH), dtype=np.int64)
    for row, text in enumerate(texts):
        words = tokenize(text)[:SEQUENCE_LENGTH]
        ids[row, : len(words)] = [token_id(w) for w in words]
        mask[row, : len(words)] = 1
    return {"input_ids": ids, "attention_mask": mask}


@functools.cache
def _splits() -> dict[str, dict[str, Any]]:
    texts, labels = corpus()
    train_rows, test_rows = train_test_split(
        np.arange(len(texts)), test_size=TEST_FRACTION, random_state=SEED, stratify=labels
    )
    inputs = encode(texts)
    return {
        name: {"inputs": {k: v[rows] for k, v in inputs.items()}, "labels": labels[rows]}
        for name, rows in (("train", np.sort(train_rows)), ("test", np.sort(test_rows)))
    }


def load() -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """The data for the harness (data kind python): {"train": (inputs, labels), "test": (inputs, labels)}.

    inputs maps `input_ids` and `attention_mask` to int64 [n, SEQUENCE_LENGTH] arrays; labels are
    int64 class ids (names in CLASS_NAMES). A seeded, stratified 75/25 split.
    """
    return {
        name: ({k: v.copy() for k, v in split["inputs"].items()}, split["labels"].copy())
        for name, split in _splits().items()
    }


# ---- model ------------------------------------------------------------------------------------


class TextBagClassifier(nn.Module):
    """Mean word embedding over the real tokens -> Linear -> ReLU -> Linear -> class logits."""

    def __init__(self, config: TrainConfig = TrainConfig()) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(VOCAB_BUCKETS, config.embedding_dim, mode="sum", padding_idx=0)
        self.hidden = nn.Linear(config.embedding_dim, config.hidden)
        self.out = nn.Linear(config.hidden, len(CLASS_NAMES))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # a weighted sum with weights 1/length over the real tokens is their mean; padding weighs 0
        weights = attention_mask.to(torch.float32)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        pooled = self.bag(input_ids, per_sample_weights=weights)
        return self.out(torch.relu(self.hidden(pooled)))


def train(model: TextBagClassifier, config: TrainConfig = TrainConfig()) -> None:
    """Train `model` in place on the training split, reproducibly (see `training.fit_minibatches`)."""
    split = _splits()["train"]
    ids = torch.from_numpy(split["inputs"]["input_ids"])
    mask = torch.from_numpy(split["inputs"]["attention_mask"])
    labels = torch.from_numpy(split["labels"])

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(ids[rows], mask[rows]), labels[rows])

    fit_minibatches(model, batch_loss, len(labels), config)


def trained_model(config: TrainConfig = TrainConfig()) -> tuple[TextBagClassifier, CachedWeights]:
    """The trained classifier (eval mode) and where its weights came from (cache or training)."""
    split = _splits()["train"]
    arrays = {**split["inputs"], "labels": split["labels"]}
    return cached_model("text_bag", TextBagClassifier, train, config, arrays)


def make_model() -> nn.Module:
    """The factory the scenario names: the trained classifier, from the cache after the first call."""
    model, _ = trained_model()
    return model


def train_weights(path: str | Path) -> Path:
    """Train from scratch and torch.save the state_dict to `path`: for a `weights:` file, if wanted.

    `make_model` does not need it; a scenario that prefers a committed weights file would name
    `python:examples.text_bag:untrained_model` as its source and this file as `weights:`.
    """
    return save_trained(path, TextBagClassifier, train, TrainConfig())


def untrained_model() -> nn.Module:
    """The architecture alone, for a scenario that loads `weights:` (see `train_weights`)."""
    return TextBagClassifier()
