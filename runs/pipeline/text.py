"""Reading a scene's text: sentences, quoted speech, names and who speaks (SPEC §10 generators).

Small deterministic heuristics, no model and no network. Everything works on offsets into
the one text, so a quote, a sentence and a name mention can be related by position: the
sentence splitter knows where the quotes are (it never splits inside one), the speaker
of a quote is looked for in the words beside it, and a detail word belongs to the name
mentioned nearest before it in its sentence. ``read(text)`` does the reading once and
keeps sorted offsets, so every lookup is a binary search and a long scene stays cheap.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import islice
from typing import NamedTuple

# A word is letters (any script, so accents count), joined by inner hyphens or apostrophes.
WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_TERMINAL = re.compile(r"[.!?…]+")
_QUOTE_PATTERNS = (re.compile(r'"([^"]*)"'), re.compile(r"“([^“”]*)”"), re.compile(r"«([^«»]*)»"))
_OPENERS = "\"“«‘('["
_CLOSERS = ")]’'"
_QUOTE_MARKS = "\"“”«»‘’'()[]"
_SENTENCE_END = ".!?…"
_POSSESSIVE = re.compile(r"['’]s$")
_HAS_WORD = re.compile(r"[^\W_]")
MAX_NAME_WORDS = 4  # a longer run of capitals is a title or shouting, not one name

# "Mr. Reyes" does not end a sentence, and "Dr" alone is nobody.
ABBREVIATIONS = frozenset("mr mrs ms dr st mt jr sr prof capt col gen lt sgt rev vs fig".split())

# Capitalised only because they start a sentence or a quote, or never a character's name.
NOT_NAMES = frozenset(
    """
    a about above across after again against ah all also although always an and another any anyone anything are
    around as at away back be because before behind below beneath beside besides between beyond both but by can
    come could dear did do does don't down during each either even ever every everyone everything far few finally
    for from get go good goodbye had has have he hello her here hers hey hi him his how however i if in inside
    instead into is it its just last later let like many maybe me meanwhile mine more most much my near never next
    no nobody none nor not nothing now of off oh ok okay on once one only or other our out outside over perhaps
    please quick quickly quiet quietly rather really she should since slowly so some somebody someone something
    somewhere soon sorry still such suddenly than thank thanks that the their them then there these they this those
    though through thus to today together tomorrow tonight too toward towards under until up upon us very wait was
    we well were what whatever when where whether which while who whoever whom whose why will with within without
    would yes yet you your yours
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
    september october november december
    """.split()
)

# Capitalised at the start of a sentence, and common words rather than names.
COMMON_OPENERS = frozenset(
    """
    rain wind snow fog mist hail sleet frost ice night dawn dusk twilight morning noon afternoon evening midnight
    storm sun sunlight moon moonlight sky light darkness dark shadow silence thunder lightning water sea fire smoke
    ash dust time blood breath music laughter outside inside later above below behind beyond downstairs upstairs
    somewhere silence nobody everybody anybody none home dinner breakfast supper school church work
    """.split()
)
_COMMON_ENDINGS = ("s", "ly", "ing", "ed")

# The prepositions that put a capitalised word on a map rather than in the cast.
PLACE_PREPOSITIONS = frozenset("in at into across near toward towards through inside beyond outside around".split())

SPEECH_VERBS = frozenset(
    """
    said says say asked asks whispered whispers shouted shouts cried cries replied replies answered answers
    muttered mutters called calls yelled yells screamed screams murmured murmurs snapped snaps added adds began
    continued laughed sighed hissed growled exclaimed insisted warned pleaded begged demanded told breathed admitted
    agreed explained repeated stammered stuttered gasped sobbed chuckled giggled grumbled snarled barked ordered
    commanded teased wondered remarked noted roared bellowed
    """.split()
)

# What a speech verb says about the voice; verbs not here (said, replied...) leave it to the punctuation.
VERB_EMOTIONS = {
    "whispered": "hushed", "whispers": "hushed", "murmured": "hushed", "murmurs": "hushed", "breathed": "hushed",
    "shouted": "urgent", "shouts": "urgent", "yelled": "urgent", "yells": "urgent", "roared": "urgent",
    "bellowed": "urgent", "screamed": "terrified", "screams": "terrified", "cried": "distressed",
    "cries": "distressed", "sobbed": "sad", "asked": "curious", "asks": "curious", "wondered": "curious",
    "muttered": "grumbling", "mutters": "grumbling", "grumbled": "grumbling", "laughed": "amused",
    "chuckled": "amused", "giggled": "amused", "teased": "playful", "sighed": "weary", "hissed": "angry",
    "snapped": "angry", "growled": "angry", "snarled": "angry", "barked": "angry", "pleaded": "pleading",
    "begged": "pleading", "warned": "wary", "stammered": "nervous", "stuttered": "nervous", "gasped": "shocked",
    "exclaimed": "excited", "insisted": "firm", "demanded": "firm", "ordered": "commanding",
    "commanded": "commanding",
}  # fmt: skip
ADVERB_EMOTIONS = {
    "softly": "gentle", "gently": "gentle", "quietly": "hushed", "angrily": "angry", "sharply": "angry",
    "sadly": "sad", "bitterly": "bitter", "happily": "happy", "cheerfully": "happy", "nervously": "nervous",
    "coldly": "cold", "firmly": "firm", "loudly": "urgent", "urgently": "urgent", "wearily": "weary",
    "tenderly": "tender", "fiercely": "fierce", "calmly": "calm",
}  # fmt: skip

PRONOUNS = frozenset("he she they him her them".split())
PERSONAL_PRONOUNS = frozenset("he she his her him hers himself herself".split())
FIRST_PERSON = frozenset("i we".split())
DETERMINERS = frozenset("the a an her his their its my our your this that".split())

COLOURS = frozenset(
    """red blue green yellow black white grey gray silver golden gold brown purple orange pink crimson scarlet pale
    dark amber copper violet navy ivory tawny rusty ashen""".split()
)
FEATURES = frozenset(
    """tall short old young thin broad bearded scarred tired wet soaked weathered wiry small large huge slender
    stooped bald freckled wrinkled grizzled elderly lanky muscular frail gaunt ragged torn worn muddy bloody long
    curly straight shaggy heavy patched faded sharp""".split()
)
CLOTHING = frozenset(
    """coat cloak hat cap scarf boots boot dress shirt jacket gloves glove hood uniform oilskin oilskins apron robe
    vest trousers skirt shawl helmet armor armour belt sweater jumper overcoat raincoat mask spectacles glasses
    goggles ring necklace collar sleeves""".split()
)
BODY = frozenset("hair eyes beard moustache mustache face hands skin scar braid braids cheeks brow".split())
PROPS = frozenset(
    """lantern lamp sword knife staff book map rope key gun bag basket letter candle torch umbrella cane pipe
    compass spyglass bucket""".split()
)


@dataclass(frozen=True)
class Sentence:
    index: int
    start: int
    end: int
    text: str  # whitespace collapsed


@dataclass(frozen=True)
class Quote:
    start: int  # of the opening mark
    end: int  # just past the closing mark
    text: str  # the words inside, whitespace collapsed


@dataclass
class Character:
    name: str
    kind: str  # "name" (capitalised in the text) or "role" (a speaker like "the keeper")
    aliases: list[str] = field(default_factory=list)
    mentions: list[tuple[int, int]] = field(default_factory=list)  # (start, end) offsets, in order


class _Candidate(NamedTuple):
    name: str
    start: int
    end: int
    position: str  # "inside" a sentence, opening a "sentence", or opening a "quote"
    evident: bool  # corroborated by its own neighbours
    previous: str  # the word before it, case-folded


@dataclass(frozen=True)
class Attribution:
    speaker: str
    source: str  # how it was found, for the payload's evidence
    verb: str = ""
    adverb: str = ""


def collapse(text: str) -> str:
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """The text's words, case-folded, in order."""
    return [m.group().casefold() for m in WORD.finditer(text)]


def _paragraphs(text: str) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        bounds.append((start, m.start()))
        start = m.end()
    bounds.append((start, len(text)))
    return bounds


def quotes(text: str) -> list[Quote]:
    """Quoted passages ("...", “...”, «...»), paired within a paragraph, in order, never overlapping.

    A straight quote left without its partner (a typo, or speech running on past a paragraph)
    is ignored rather than allowed to swallow the rest of the scene.
    """
    found = []
    for p_start, p_end in _paragraphs(text):
        for pattern in _QUOTE_PATTERNS:
            for m in pattern.finditer(text, p_start, p_end):
                found.append(Quote(m.start(), m.end(), collapse(m.group(1))))
    found.sort(key=lambda q: (q.start, -q.end))
    kept: list[Quote] = []
    for q in found:
        if not kept or q.start >= kept[-1].end:
            kept.append(q)
    return kept


def _is_abbreviation(text: str, dot: int) -> bool:
    m = re.search(r"([^\W\d_]+)$", text[max(0, dot - 20) : dot])
    return bool(m) and (m.group(1).casefold() in ABBREVIATIONS or (len(m.group(1)) == 1 and m.group(1).isupper()))


def _quote_around(quoted: list[Quote], starts: list[int], offset: int) -> Quote | None:
    """The quote whose marks enclose offset, if any (quotes never overlap)."""
    i = bisect_right(starts, offset) - 1
    return quoted[i] if i >= 0 and quoted[i].start < offset < quoted[i].end else None


def sentences(text: str, quoted: list[Quote] | None = None) -> list[Sentence]:
    """Split at . ! ? … (outside quotes) or after a quote ending in one, when the next word
    starts a new sentence (a capital, a digit, an opening quote); and at every blank line.

    So '"Who goes there?" the keeper asked.' is one sentence, '"Hold on." Mara ran.' two.
    Pieces with no letter or digit (stray punctuation) are not sentences.
    """
    quoted = quotes(text) if quoted is None else quoted
    starts = [q.start for q in quoted]
    cuts: list[int] = []
    for p_start, p_end in _paragraphs(text):
        candidates = []
        for m in _TERMINAL.finditer(text, p_start, p_end):
            if _quote_around(quoted, starts, m.start()):
                continue
            if m.group() == "." and _is_abbreviation(text, m.start()):
                continue
            end = m.end()
            while end < p_end and text[end] in _CLOSERS:
                end += 1
            candidates.append(end)
        first, last = bisect_left(starts, p_start), bisect_left(starts, p_end)
        candidates += [q.end for q in quoted[first:last] if q.text[-1:] and _TERMINAL.match(q.text[-1])]
        for end in sorted(set(candidates)):
            gap = len(text[end:p_end]) - len(text[end:p_end].lstrip())
            if end + gap >= p_end or gap == 0:
                continue  # the paragraph's end cuts anyway; "3.14", "e.g.x": no space, no new sentence
            nxt = text[end + gap]
            if nxt.isupper() or nxt.isdigit() or nxt in _OPENERS:
                cuts.append(end)
        cuts.append(p_end)
    result, start = [], 0
    for cut in sorted(set(cuts)):
        piece = text[start:cut]
        if _HAS_WORD.search(piece):
            lead = len(piece) - len(piece.lstrip())
            result.append(Sentence(len(result), start + lead, cut, collapse(piece)))
        start = cut
    return result


def _capitalised(token: str) -> bool:
    # One letter ("I", an initial) or all capitals (shouting, acronyms) is not a name here.
    return len(token) > 1 and token[0].isupper() and not token.isupper()


def _base(token: str) -> str:
    return _POSSESSIVE.sub("", token)


class Reading:
    """One text read once: its quotes, sentences, words and named characters, with the
    sorted offsets the lookups below search."""

    def __init__(self, text: str):
        self.text = text
        self.quotes = quotes(text)
        self._quote_starts = [q.start for q in self.quotes]
        self.sentences = sentences(text, self.quotes)
        self._sentence_starts = [s.start for s in self.sentences]
        self.tokens = list(WORD.finditer(text))
        self._token_starts = [t.start() for t in self.tokens]
        self.cast = self._names()
        self._index_mentions(self.cast)

    # -- positions --

    def sentence_at(self, offset: int) -> Sentence | None:
        i = bisect_right(self._sentence_starts, offset) - 1
        return self.sentences[i] if i >= 0 and offset < self.sentences[i].end else None

    def in_quote(self, offset: int) -> bool:
        return _quote_around(self.quotes, self._quote_starts, offset) is not None

    def tokens_between(self, start: int, end: int) -> list[re.Match]:
        return self.tokens[bisect_left(self._token_starts, start) : bisect_left(self._token_starts, end)]

    def _index_mentions(self, characters: list[Character]) -> None:
        self._mentions = sorted((start, end, c.name) for c in characters for start, end in c.mentions)
        self._mention_starts = [m[0] for m in self._mentions]
        # Mentions outside quotes, for "she said": who was last named in the telling.
        told = [m for m in self._mentions if not self.in_quote(m[0])]
        self._told, self._told_starts = told, [m[0] for m in told]

    def name_covering(self, tok: re.Match) -> str | None:
        """The character whose mention contains this word ('Reyes' of 'Captain Reyes')."""
        i = bisect_right(self._mention_starts, tok.start()) - 1
        while i >= 0 and self._mentions[i][0] > tok.start() - 80:
            start, end, name = self._mentions[i]
            if start <= tok.start() and tok.end() <= end:
                return name
            i -= 1
        return None

    def name_starting(self, tok: re.Match) -> str | None:
        i = bisect_left(self._mention_starts, tok.start())
        return self._mentions[i][2] if i < len(self._mentions) and self._mentions[i][0] == tok.start() else None

    def last_named_before(self, offset: int) -> str | None:
        i = bisect_left(self._told_starts, offset) - 1
        return self._told[i][2] if i >= 0 else None

    # -- names --

    def _opens(self, tok: re.Match) -> bool:
        """Whether a word starts a sentence or a quote: only punctuation that ends a sentence,
        quote marks or brackets stand between it and the previous word (or nothing does)."""
        i = tok.start() - 1
        while i >= 0 and (self.text[i].isspace() or self.text[i] in _QUOTE_MARKS):
            if self.text[i] in _OPENERS and self.in_quote(i + 1):
                return True  # the first word of a quote
            i -= 1
        return i < 0 or self.text[i] in _SENTENCE_END

    def _names(self) -> list[Character]:
        """Characters named with capitals, in order of first mention.

        A run of capitalised words ("Captain Reyes") is one name once the words that are
        capitalised only by position are dropped ("When Mara" -> "Mara"). A lone capitalised
        word that starts a sentence is capitalised by position, so it needs more:

        - corroboration: the same word capitalised mid-sentence, a speech verb right after it
          ("Mara said"), a possessive ("Mara's"), or a he/she/his/her later in its sentence
          ("Tobin turned, his eyes on the sea");
        - or else it must not look like a common word: not in the common sentence openers
          ("Rain", "Silence"), never written in lower case in the text, no -s/-ly/-ing/-ed.

        A word that starts a quote ('"Hold on"') needs corroboration: speech opens with verbs.
        A name only ever seen after "in", "at", "across"... is a place, not a character. A
        single word that is part of exactly one longer name ("Reyes" of "Captain Reyes") is an
        alias of it.
        """
        text, tokens = self.text, self.tokens
        lower = {t.group().casefold() for t in tokens if not t.group()[0].isupper()}
        runs: list[list[int]] = []  # token indexes
        for i, tok in enumerate(tokens):
            if not _capitalised(tok.group()):
                continue
            prev = tokens[i - 1] if i else None
            if (
                runs
                and runs[-1][-1] == i - 1
                and text[prev.end() : tok.start()] == " "
                and not _POSSESSIVE.search(prev.group())
            ):
                runs[-1].append(i)
            else:
                runs.append([i])
        candidates: list[_Candidate] = []
        for run in runs:
            for part in [run] if len(run) <= MAX_NAME_WORDS else [[i] for i in run]:
                while part and _base(tokens[part[0]].group()).casefold() in NOT_NAMES:
                    part = part[1:]
                while part and _base(tokens[part[-1]].group()).casefold() in NOT_NAMES:
                    part = part[:-1]
                if not part or (len(part) == 1 and _base(tokens[part[0]].group()).casefold() in ABBREVIATIONS):
                    continue
                first, last = tokens[part[0]], tokens[part[-1]]
                name = " ".join([tokens[i].group() for i in part[:-1]] + [_base(last.group())])
                nxt = tokens[part[-1] + 1] if part[-1] + 1 < len(tokens) else None
                # "Mara said", "Mara, said" count; '"Ici!" cried' does not: the verb belongs to the quote.
                after = nxt.group().casefold() if nxt and not text[last.end() : nxt.start()].strip(" ,") else ""
                before = tokens[part[0] - 1].group().casefold() if part[0] else ""
                if len(part) > 1 or not self._opens(first):
                    position = "inside"
                else:
                    position = "quote" if self.in_quote(first.start()) else "sentence"
                evident = bool(_POSSESSIVE.search(last.group())) or after in SPEECH_VERBS
                if position == "sentence" and not evident:
                    sentence = self.sentence_at(first.start())
                    rest = self.tokens_between(last.end(), sentence.end) if sentence else []
                    evident = any(t.group().casefold() in PERSONAL_PRONOUNS for t in rest)
                candidates.append(_Candidate(name, first.start(), last.end(), position, evident, before))
        confirmed = {word for c in candidates if c.position == "inside" for word in c.name.split()}

        def looks_like_a_name(c: _Candidate) -> bool:
            if c.position == "inside" or c.evident or c.name in confirmed:
                return True
            word = c.name.casefold()
            common = word in COMMON_OPENERS or word in lower or (len(word) > 4 and word.endswith(_COMMON_ENDINGS))
            return c.position == "sentence" and not common

        accepted = [c for c in candidates if looks_like_a_name(c)]
        by_name: dict[str, list] = {}
        for c in accepted:
            by_name.setdefault(c.name, []).append(c)
        places = {n for n, cs in by_name.items() if all(c.previous in PLACE_PREPOSITIONS for c in cs)}
        owners: dict[str, list[str]] = {}
        for n in by_name:
            if " " in n and n not in places:
                for word in n.split():
                    owners.setdefault(word, []).append(n)
        result: dict[str, Character] = {}
        for name, start, end, *_ in accepted:  # in text order, so first mentions come first
            if name in places:
                continue
            mine = owners.get(name, []) if " " not in name else []
            canonical = mine[0] if len(mine) == 1 else name
            character = result.setdefault(canonical, Character(canonical, "name"))
            if canonical != name and name not in character.aliases:
                character.aliases.append(name)
            character.mentions.append((start, end))
        return list(result.values())

    # -- who speaks --

    def attribute(self, quote: Quote) -> Attribution:
        """Who speaks a quote: a speech verb beside it ('said Mara', 'Mara whispered', 'the keeper
        said'), first after the quote then before it, within its sentence; else a name acting in
        the same sentence before it ('Mara leaned in: "..."'); else, for a quote that is a
        sentence on its own, a name opening the next sentence; else the narrator. A pronoun
        speaker ('she said') is the last name mentioned before the quote outside quotes."""
        sentence = self.sentence_at(quote.start)
        s_start, s_end = (sentence.start, sentence.end) if sentence else (quote.start, quote.end)
        i = bisect_left(self._quote_starts, quote.start)
        after_end = min(s_end, self.quotes[i + 1].start if i + 1 < len(self.quotes) else s_end)
        before_start = max(s_start, self.quotes[i - 1].end if i > 0 else s_start)
        after = self.tokens_between(quote.end, after_end)[:8]
        before = self.tokens_between(before_start, quote.start)[-8:]

        def pronoun(word: str) -> str | None:
            if word in FIRST_PERSON:
                return "narrator"
            if word in PRONOUNS:
                return self.last_named_before(quote.start) or "narrator"
            return None

        for window, side in ((after, "after"), (before, "before")):
            verbs = [k for k, t in enumerate(window) if t.group().casefold() in SPEECH_VERBS]
            if not verbs:
                continue
            v = verbs[0] if side == "after" else verbs[-1]  # the verb nearest the quote
            verb = window[v].group().casefold()
            near = [t.group().casefold() for t in window[max(v - 1, 0) : v + 4]]  # "said Mara softly"
            adverb = next((w for w in near if w.endswith("ly") and w in ADVERB_EMOTIONS), "")
            # The subject before the verb ("Mara said", "the keeper said", "she quietly said")...
            k = v - 1
            if k >= 0 and window[k].group().casefold().endswith("ly"):
                k -= 1
            if k >= 0:
                word = window[k].group().casefold()
                found = self.name_covering(window[k])
                if found:
                    return Attribution(found, f"'{found} {verb}' {side} the quote", verb, adverb)
                role = _role_before(window, k)
                if role:
                    return Attribution(role[0], f"'the {role[0]} {verb}' {side} the quote", verb, adverb)
                if pronoun(word):
                    return Attribution(pronoun(word), f"'{word} {verb}' {side} the quote", verb, adverb)
            # ...or after it ("said Mara", "said the keeper", "said she").
            if v + 1 < len(window):
                nxt = window[v + 1]
                found = self.name_starting(nxt)
                if found:
                    return Attribution(found, f"'{verb} {found}' {side} the quote", verb, adverb)
                role = _role_after(window, v + 1)
                if role:
                    return Attribution(role[0], f"'{verb} the {role[0]}' {side} the quote", verb, adverb)
                word = nxt.group().casefold()
                if pronoun(word):
                    return Attribution(pronoun(word), f"'{verb} {word}' {side} the quote", verb, adverb)
        for tok in reversed(before):
            found = self.name_covering(tok)
            if found:
                return Attribution(found, f"{found} acts before the quote in its sentence")
        if sentence and not before and not after and sentence.index + 1 < len(self.sentences):
            # '"Hold on." Mara ran.': a quote on its own, spoken by whoever acts next.
            following = self.sentences[sentence.index + 1]
            first = WORD.search(self.text, following.start, following.end)
            found = self.name_starting(first) if first else None
            if found:
                return Attribution(found, f"{found} acts in the sentence after the quote")
        return Attribution("narrator", "no speaker found beside the quote")

    def roles(self, attributions: list[Attribution]) -> list[Character]:
        """Unnamed speakers ('the keeper') as characters, mentioned wherever their noun appears."""
        known = {c.name.casefold() for c in self.cast}
        result: dict[str, Character] = {}
        for a in attributions:
            if a.speaker != "narrator" and a.speaker.casefold() not in known and a.speaker not in result:
                character = Character(a.speaker, "role")
                character.mentions = [(m.start(), m.end()) for m in _whole_word(a.speaker).finditer(self.text)]
                result[a.speaker] = character
        return list(result.values())

    # -- how they look --

    def details(self, characters: list[Character]) -> dict[str, dict]:
        """Visual details of each character from the words of the sentences that mention them.

        A detail word belongs to the character mentioned nearest before it in its sentence (the
        subject usually comes before its description), else to the nearest after it. Clothing,
        body and prop nouns keep up to two modifiers just before them ('yellow oilskin');
        colours are also listed on their own; other modifiers are features ('tall', 'tired').
        """
        everyone = sorted((start, end, c.name) for c in characters for start, end in c.mentions)
        starts = [m[0] for m in everyone]
        details = {
            c.name: {"clothing": [], "features": [], "props": [], "colors": [], "mentions": len(c.mentions)}
            for c in characters
        }
        for s in self.sentences:
            mentions = everyone[bisect_left(starts, s.start) : bisect_left(starts, s.end)]
            if not mentions:
                continue
            # A name's own words ("Old" of "Old Tobin") describe nobody.
            tokens = [
                t for t in self.tokens_between(s.start, s.end) if not any(a <= t.start() < b for a, b, _ in mentions)
            ]
            folded = [t.group().casefold() for t in tokens]
            in_phrase = set()
            items = []  # (token index, category, phrase words)
            for i, word in enumerate(folded):
                category = _NOUN_CATEGORY.get(word)
                if category:
                    j = i
                    while j > 0 and i - j < 2 and _modifier(folded[j - 1]):
                        j -= 1
                    in_phrase.update(range(j, i))
                    items.append((i, category, folded[j : i + 1]))
            items += [(i, "features", [w]) for i, w in enumerate(folded) if _modifier(w) and i not in in_phrase]
            for i, category, phrase in sorted(items):
                before = [name for start, _end, name in mentions if start < tokens[i].start()]
                owner = details[before[-1] if before else mentions[0][2]]
                _add(owner[category], " ".join(phrase))
                for part in "-".join(phrase).split("-"):
                    if part in COLOURS:
                        _add(owner["colors"], part)
        return details


def read(text: str) -> Reading:
    return Reading(text)


def _role_after(tokens: list[re.Match], i: int) -> tuple[str, list[str]] | None:
    """'the old keeper' starting at tokens[i] (a determiner): the head noun and its adjectives."""
    if i >= len(tokens) or tokens[i].group().casefold() not in DETERMINERS:
        return None
    phrase = []
    for tok in tokens[i + 1 : i + 4]:
        word = tok.group().casefold()
        if word in NOT_NAMES or word in SPEECH_VERBS or word.endswith("ly"):
            break
        phrase.append(word)
    return (phrase[-1], phrase[:-1]) if phrase else None


def _role_before(tokens: list[re.Match], i: int) -> tuple[str, list[str]] | None:
    """'the old keeper' ending at tokens[i]: found by walking back to its determiner."""
    for j in range(i, max(i - 3, -1), -1):
        if tokens[j].group().casefold() in DETERMINERS:
            role = _role_after(tokens, j)
            return role if role and j + 1 + len(role[1]) == i else None
    return None


def _whole_word(phrase: str) -> re.Pattern:
    return re.compile(rf"(?<![^\W\d_]){re.escape(phrase)}(?![^\W\d_])", re.IGNORECASE)


def mentions_in(text: str, character_names: list[tuple[str, list[str]]]) -> list[str]:
    """Which of (name, aliases) appear in a text as whole words, case-insensitively, in their order."""
    found = []
    for name, aliases in character_names:
        if any(candidate.strip() and _whole_word(candidate.strip()).search(text) for candidate in [name, *aliases]):
            found.append(name)
    return found


_PLACE_PHRASE = re.compile(
    r"\b(in|on|at|inside|outside|beneath|under|above|below|across|along|through|near|by|into|onto|atop|beyond"
    r"|against|over|behind|beside)\s+((?:the|a|an|her|his|their|its|our|my)\s+)?",
    re.IGNORECASE,
)
_PHRASE_STOP = NOT_NAMES | SPEECH_VERBS | {"was", "were", "is", "are", "had", "has"}


def setting_phrases(text: str) -> list[str]:
    """Where things happen: 'on the gallery', 'at the top of the lighthouse', in order, unique.

    A place preposition and a determiner, then up to four words with nothing but spaces
    between them, stopping at a function word, a speech verb or an -ly adverb; 'of the'
    may join a second noun phrase.
    """
    found: dict[str, None] = {}  # ordered and unique
    for m in _PLACE_PHRASE.finditer(text):
        phrase = [m.group(1).casefold(), *([m.group(2).strip().casefold()] if m.group(2) else [])]
        last_end, nouns = m.end(), 0
        following = list(islice(WORD.finditer(text, m.end()), 7))
        if not m.group(2) and not (following and _capitalised(following[0].group())):
            continue  # without a determiner only a proper name is a place ("in Dunmore Bay")
        for tok in following:
            if text[last_end : tok.start()].strip():
                break  # punctuation ends the phrase
            word = tok.group().casefold()
            joins = nouns and (word == "of" or (phrase[-1] == "of" and word in DETERMINERS))
            if not joins and (word in _PHRASE_STOP or word.endswith("ly") or nouns >= 4):
                break
            phrase.append(tok.group() if _capitalised(tok.group()) else word)  # "in Dunmore Bay" keeps its capitals
            nouns += 0 if joins else 1
            last_end = tok.end()
        while len(phrase) > 1 and phrase[-1] in ("of", *DETERMINERS):
            phrase.pop()
        if phrase[-1].casefold() in _NOUN_CATEGORY:
            continue  # "in her yellow oilskin" is what someone wears, not where they are
        if nouns:
            found[" ".join(phrase)] = None
    return list(found)


_NOUN_CATEGORY = {
    **dict.fromkeys(CLOTHING, "clothing"),
    **dict.fromkeys(BODY, "features"),
    **dict.fromkeys(PROPS, "props"),
}


def _modifier(word: str) -> bool:
    return any(part in COLOURS or part in FEATURES for part in word.split("-"))


def _add(items: list, value: str) -> None:
    if value not in items:
        items.append(value)
