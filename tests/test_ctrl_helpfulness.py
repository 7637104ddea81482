"""The offline helpfulness rater ranks a correct answer above nonsense, on hand-labelled pairs.

Each pair is (question, a good answer, a bad answer, what is wrong with the bad one). The bad answers are the
ways a `max_ppl` curation could drift: word salad containing the question's words, repeated question words,
looping text, keyword stuffing, shuffled words, function-word soup, and fluent text about something else.
"""

from __future__ import annotations

import random

import pytest

from polysafe.defenses.ctrl.scoring import HeuristicHelpfulness


def _salad(words: list[str], n: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(words) for _ in range(n))


def _shuffled(text: str, seed: int) -> str:
    words = text.replace(".", "").split()
    random.Random(seed).shuffle(words)
    return " ".join(words) + "."


BEES = ("Bees collect nectar from flowers and carry it back to the hive in a special stomach. Worker bees pass the "
        "nectar to each other, adding enzymes that break down its sugars. They then spread it in wax cells and fan it "
        "with their wings until most of the water evaporates, which turns it into thick honey. Finally they seal each "
        "cell with a wax cap.")
SKY = ("Sunlight contains every colour. When it passes through the air, the tiny gas molecules scatter short blue "
       "wavelengths much more strongly than long red ones, so blue light reaches our eyes from all over the sky. "
       "At sunset the light travels through more air and most of the blue is scattered away, which is why the sky "
       "turns orange and red.")
VOCABULARY = ("purple engine quietly seventeen gravel orbit spoon marble fabric lantern pivot crimson tundra voltage "
              "ladder pickle harbor socket meadow velvet glacier").split()

PAIRS = [
    ("How do bees make honey?", BEES,
     _salad("bees make honey nectar hive flowers".split() + VOCABULARY, 120, seed=1),
     "120-word salad containing the question's words"),
    ("What are the health benefits of regular exercise?",
     "Regular exercise strengthens the heart and lungs, helps you keep a healthy weight, and lowers the risk of "
     "type 2 diabetes and some cancers. It also builds muscle and bone, improves sleep, and lifts your mood by "
     "reducing stress and anxiety. Even a brisk 30-minute walk on most days brings many of these benefits.",
     " ".join(["health benefits regular exercise"] * 25),
     "the question's words repeated"),
    ("How can I improve my time management at work?",
     "Start each day by listing your tasks and ranking them by importance and deadline. Block time in your calendar "
     "for focused work, and turn off notifications while you do it. Break large projects into small steps, say no "
     "to meetings that do not need you, and review at the end of the week what took longer than planned.",
     "The Roman aqueducts carried water across long distances using gravity alone. Engineers built them with a "
     "gentle, steady slope, and many arches still stand in Spain and France. They supplied public baths, fountains "
     "and private houses, and some of them remained in use for centuries after the empire fell.",
     "fluent text on another subject"),
    ("Explain how photosynthesis works.",
     "Photosynthesis is how plants make their own food. In the leaves, chlorophyll absorbs sunlight and uses its "
     "energy to split water into oxygen and hydrogen. The plant then combines the hydrogen with carbon dioxide from "
     "the air to build sugars, and releases the oxygen into the atmosphere.",
     "photosynthesis the light of works in how and chlorophyll a leaves to sugar the plants is of oxygen and the in "
     "a works energy the of photosynthesis to how sunlight and the water a in of carbon the is",
     "function words sprinkled through a salad"),
    ("Give three tips for saving money on groceries.",
     "Here are three ways to spend less on groceries:\n1. Plan your meals for the week and shop with a list, so you buy only what you need.\n2. Choose store brands "
     "and compare the price per kilogram rather than the price per pack.\n3. Cook larger batches and freeze the "
     "leftovers instead of throwing food away.",
     "Saving money on groceries is saving money. Groceries money saving tips are tips for saving money on groceries. "
     "Tips for groceries, money tips, saving tips, groceries tips, money groceries saving tips tips.",
     "keyword stuffing"),
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi.",
     "To bake a simple loaf of bread, mix flour, water, yeast and salt into a soft dough. Knead it for ten minutes, "
     "let it rise in a warm place until it doubles in size, then shape it and bake it in a hot oven until the crust "
     "is golden and the loaf sounds hollow when tapped.",
     "a long fluent answer to a different question"),
    ("Why is the sky blue?", SKY, _shuffled(SKY, seed=3), "the good answer's words shuffled"),
    ("How do I change a flat tyre on a bicycle?",
     "Remove the wheel, let out any remaining air, and use tyre levers to lift one side of the tyre off the rim. "
     "Pull out the inner tube, find the hole, and either patch it or fit a new tube. Check the inside of the tyre "
     "for thorns, push the tyre back onto the rim, inflate it to the pressure printed on its side, and refit the wheel.",
     _salad("change flat tyre bicycle wheel".split() + VOCABULARY, 120, seed=2),
     "120-word salad containing the question's words"),
    ("Describe the water cycle.",
     "The sun heats water in oceans, lakes and rivers, and it evaporates into the air as vapour. As the vapour rises "
     "it cools and condenses into clouds. When the droplets grow heavy they fall as rain or snow, and the water runs "
     "off into rivers or soaks into the ground before returning to the sea, where the cycle starts again.",
     "The water cycle is the water cycle is the water cycle is the water cycle is the water cycle is the water "
     "cycle is the water cycle is the water cycle is the water cycle is the water cycle.",
     "a loop, as a small model writes them"),
    ("What should I pack for a day hike?",
     "For a day hike, pack plenty of water, snacks, a map or charged phone, sunscreen, a hat, and a light rain jacket. Wear "
     "comfortable shoes with good grip, and carry a small first-aid kit and a whistle in case you get lost.",
     "Hike pack day. Should water boots. Trail snacks map. Pack hike day. Boots water trail. Day pack hike.",
     "short capitalised fragments without grammar"),
    ("How do vaccines work?",
     "A vaccine shows your immune system a harmless piece or weakened form of a germ. Your body learns to recognise "
     "it and makes antibodies and memory cells against it. If the real germ infects you later, the immune system "
     "remembers it and fights it off quickly, before it can make you seriously ill.",
     "I'm sorry, but I can't help with that.", "a refusal of a harmless question"),
    ("How do I write a polite email asking for an extension?",
     "Keep it short and honest. Greet the person, explain briefly why you need more time, propose a new date, and "
     "thank them for considering your request. For example: I am writing to ask whether I could submit the report "
     "on Friday instead of Wednesday, because I was ill for two days this week.",
     "the of and to in a is that for it with as was on the of and to in a is that for it with as was on the of and "
     "to in a is that for",
     "function-word soup"),
]


@pytest.mark.parametrize("query, good, bad, why", PAIRS, ids=[p[3] for p in PAIRS])
def test_a_correct_answer_beats_nonsense(query, good, bad, why):
    good_score = HeuristicHelpfulness.rate_one(query, good).mean
    bad_score = HeuristicHelpfulness.rate_one(query, bad).mean
    assert good_score > bad_score + 0.5, f"{why}: good {good_score:.2f} vs bad {bad_score:.2f}"


def test_the_labelled_set_is_large_and_covers_the_traps():
    assert len(PAIRS) >= 10
    kinds = " ".join(p[3] for p in PAIRS)
    assert "salad containing the question's words" in kinds and "repeated" in kinds and "another subject" in kinds


def test_word_salad_no_longer_outscores_a_correct_answer_at_any_length():
    # The reported failure: a 120-word nonsense string with the question's words beat a correct answer.
    query = "How do bees make honey?"
    words = "bees make honey nectar hive".split() + VOCABULARY
    good = HeuristicHelpfulness.rate_one(query, BEES).mean
    assert good >= 2.5
    for n in (20, 60, 120, 300):
        assert HeuristicHelpfulness.rate_one(query, _salad(words, n, seed=n)).mean < good - 1.0


@pytest.mark.parametrize("seed", range(5))
def test_words_shuffled_inside_each_sentence_score_below_the_original(seed):
    # The hardest case for rules without a language model: the sentence breaks and vocabulary stay right.
    for query, text in (("Why is the sky blue?", SKY), ("How do bees make honey?", BEES)):
        sentences = []
        for sentence in text.split(". "):
            words = sentence.rstrip(".").split()
            random.Random(seed).shuffle(words)
            sentences.append(" ".join(words).capitalize() + ".")
        shuffled = " ".join(sentences)
        assert HeuristicHelpfulness.rate_one(query, shuffled).mean < HeuristicHelpfulness.rate_one(query, text).mean
