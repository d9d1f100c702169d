"""Words of a prompt as Prompt-to-Prompt and the datasets compare them: one rule for both.

A prompt's words are its space-separated parts. Two words are the same word when they agree
after lower-casing and stripping the punctuation around them ("Water." is "water"), so a blend
word written with or without its trailing full stop finds its place in the prompt.

`STOPWORDS` is NLTK's English stop-word list (``nltk.corpus.stopwords.words("english")``, the
179-word list of the NLTK data releases up to 2023, Apache-2.0), kept here as data so the package
needs neither nltk nor its corpus download: the official iCD editing script skips these words
when it amplifies the edited words of a target prompt.
"""

from __future__ import annotations

PUNCTUATION = ".,;:!?\"'()[]"


def normalize_word(word: str) -> str:
    """The comparison key of a word: lower case, surrounding punctuation stripped."""
    return word.strip().strip(PUNCTUATION).lower()


def has_word(prompt: str, word: str) -> bool:
    key = normalize_word(word)
    return any(normalize_word(w) == key for w in prompt.split())


STOPWORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he
him his himself she she's her hers herself it it's its itself they them their theirs themselves what
which who whom this that that'll these those am is are was were be been being have has had having do
does did doing a an the and but if or because as until while of at by for with about against between
into through during before after above below to from up down in out on off over under again further
then once here there when where why how all any both each few more most other some such no nor not
only own same so than too very s t can will just don don't should should've now d ll m o re ve y ain
aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't
ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't
won won't wouldn wouldn't
""".split())
