"""A small byte-level BPE tokenizer trained on the fly for the tiny test models.

Tiny models need a tiny vocabulary: with a few hundred tokens the embedding and output layers
stay a small share of the parameters, and a model can learn the world's answers in minutes on a
CPU. The tokenizer is byte-level, so any text round-trips (no unknown tokens), and digits are
always split into single characters, so numbers are read and written digit by digit, the same
way for counts, coordinates and answers the model has never seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast

_COLOURS = "red green blue yellow orange purple pink brown black white gray grey cyan magenta"
_SHAPES = "circle square triangle rectangle star diamond cross ring dot line shape shapes object objects"
_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty 0 1 2 3 4 5 6 7 8 9 10 11 12 16 20 32 64 100"
)
_WORDS = (
    "what which how many is are the a an of in on to there any color colour shape number count "
    "left right top bottom above below next biggest smallest largest big small large size "
    "image picture letter word yes no none more less than same different both all only "
    "answer question user assistant system"
)
_QUESTIONS = [
    "What color is the circle?",
    "What shape is the red object?",
    "How many triangles are there?",
    "How many shapes are in the image?",
    "Is there a blue square?",
    "Is the star above the ring?",
    "Which shape is on the left?",
    "What letter is shown?",
    "What is the biggest shape?",
    "Are there more circles than squares?",
    "Yes",
    "No",
]


def default_corpus() -> list[str]:
    """A few hundred words of plain English about colours, shapes, counts, letters and yes/no.

    Used when no corpus is given, so a usable tokenizer can be made with no data at all.
    """
    lines: list[str] = []
    for group in (_COLOURS, _SHAPES, _NUMBERS, _WORDS):
        words = group.split()
        lines.append(" ".join(words))
        lines.extend(f"{w.capitalize()} {w}" for w in words)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    lines.append(" ".join(letters))
    lines.append(" ".join(letters.lower()))
    lines.extend(_QUESTIONS)
    for colour in _COLOURS.split()[:8]:
        for shape in _SHAPES.split()[:6]:
            lines.append(f"Is there a {colour} {shape}? Yes, the {shape} is {colour}.")
    return lines


def _looks_like_pad(token: str) -> bool:
    name = token.lower()
    if "image" in name or "video" in name:
        return False
    return "pad" in name or "endoftext" in name


def _text_stream(corpus: Iterable[str], extra: list[str], repeat_extra: int) -> Iterator[str]:
    yield from corpus
    for _ in range(repeat_extra):
        yield from extra


def train_bpe_tokenizer(
    corpus: Iterable[str] | None,
    special_tokens: list[str],
    vocab_size: int = 512,
    *,
    eos_token: str | None = None,
    pad_token: str | None = None,
    bos_token: str | None = None,
    named_tokens: dict[str, str] | None = None,
    chat_template: str | None = None,
    scaffold_text: Iterable[str] = (),
    min_frequency: int = 2,
    model_max_length: int = 4096,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer and wrap it for transformers.

    Args:
        corpus: the texts to learn merges from (the world's questions and answers); ``None``
            uses :func:`default_corpus`.
        special_tokens: tokens that are never split and are skipped when decoding with
            ``skip_special_tokens``; they take the first ids, in this order.
        vocab_size: the target vocabulary size, special tokens and the 256 byte symbols
            included. A small corpus may give fewer tokens than asked.
        eos_token: the end-of-sequence token (must be in ``special_tokens``); defaults to the
            first special token.
        pad_token: the padding token (must be in ``special_tokens``); defaults to a special
            token named like a pad token (``<pad>``, ``<|endoftext|>``), else ``eos_token``.
        bos_token: an optional beginning-of-sequence token. It is not added to encodings.
        named_tokens: special tokens the tokenizer also names as attributes, e.g.
            ``{"image_token": "<image>"}`` gives ``tokenizer.image_token`` and ``image_token_id``
            (processors such as PaliGemma's look their placeholder up that way, and otherwise
            register it themselves, replacing the tokenizer's other extra special tokens).
        chat_template: a Jinja chat template stored on the tokenizer.
        scaffold_text: strings that always appear in prompts (role names, separators); they
            are weighted up in training so they get their own merges.
        min_frequency: the least count a pair needs to be merged.
        model_max_length: the longest sequence the tokenizer reports it supports.

    Returns:
        A ``PreTrainedTokenizerFast`` with ``pad_token`` and ``eos_token`` set, padding on the
        right (callers that generate switch to left padding).
    """
    if not special_tokens:
        raise ValueError("train_bpe_tokenizer needs at least one special token (the end-of-sequence token)")
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens has duplicates: {special_tokens}")
    eos = eos_token if eos_token is not None else special_tokens[0]
    if pad_token is None:
        pads = [t for t in special_tokens if _looks_like_pad(t)]
        pad_token = pads[0] if pads else eos
    named = dict(named_tokens or {})
    roles = {"eos_token": eos, "pad_token": pad_token, "bos_token": bos_token, **named}
    for name, token in roles.items():
        if token is not None and token not in special_tokens:
            raise ValueError(f"{name} {token!r} is not one of special_tokens")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(special_tokens) + len(alphabet):
        raise ValueError(
            f"vocab_size={vocab_size} is smaller than the {len(alphabet)} byte symbols plus "
            f"{len(special_tokens)} special tokens"
        )

    model = BPE(unk_token=None, fuse_unk=False, byte_fallback=False)
    tokenizer = Tokenizer(model)
    # Digits are split off one by one before the byte-level split, so no merge can join them.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    texts = default_corpus() if corpus is None else corpus
    tokenizer.train_from_iterator(_text_stream(texts, list(scaffold_text), repeat_extra=8), trainer=trainer)

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=eos,
        pad_token=pad_token,
        bos_token=bos_token,
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        **named,
    )
    others = [t for t in special_tokens if t not in (eos, pad_token, bos_token)]
    if others:
        wrapped.add_special_tokens({"extra_special_tokens": others})
    if chat_template is not None:
        wrapped.chat_template = chat_template
    return wrapped
