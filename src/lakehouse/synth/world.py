"""The latent world behind the sample data: users, photos and what makes a photo popular.

Popularity (``appeal``) is a fixed function of things a model can see later: the owner's
influence (visible through follows and past engagement in the logs), the caption topic and
hashtags, and a direction in the image embedding. So a model trained on the features beats
a constant baseline, as it would on real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from lakehouse.contracts import embedding_dim

SECONDS_PER_DAY = 86_400

COUNTRIES = ("US", "BR", "IN", "GB", "DE", "JP", "FR", "ES", "MX", "ID", "NG", "CA")
COUNTRY_WEIGHTS = np.array([22, 12, 14, 7, 6, 8, 5, 4, 6, 7, 4, 5], dtype=float)
DEVICES = ("ios", "android", "web")
CAMERAS = ("iPhone 15 Pro", "iPhone 13", "Pixel 8", "Galaxy S24", "Canon EOS R6", "Sony A7 IV")
SIZES = ((1080, 1080), (1080, 1350), (1920, 1080), (3024, 4032), (4000, 3000), (1080, 1920))
FIRST_NAMES = (
    "Ana",
    "Bo",
    "Chen",
    "Dara",
    "Eli",
    "Fatima",
    "Gus",
    "Hana",
    "Ivan",
    "Jo",
    "Kemal",
    "Lina",
    "Mateo",
    "Nia",
    "Oskar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Yuki",
)
LAST_NAMES = (
    "Silva",
    "Smith",
    "Kumar",
    "Müller",
    "Tanaka",
    "Dubois",
    "García",
    "Okafor",
    "Nguyen",
    "Kowalski",
    "Rossi",
    "Johansson",
    "Haddad",
    "Lee",
    "Costa",
    "Novak",
)
DOMAINS = ("example.com", "mail.example.org", "inbox.example.net")

# topic -> (appeal effect, caption fragments per language, hashtags)
TOPICS: dict[str, tuple[float, dict[str, tuple[str, ...]], tuple[str, ...]]] = {
    "pets": (
        0.6,
        {
            "en": ("My dog being silly", "Cat nap time"),
            "es": ("Mi perro feliz",),
            "ja": ("うちの猫がかわいい",),
            "pt": ("Meu gato dormindo",),
        },
        ("#dog", "#cat", "#puppy", "#petsofinstagram"),
    ),
    "sunset": (
        0.35,
        {
            "en": ("Golden hour at the beach", "Sunset vibes"),
            "fr": ("Coucher de soleil magnifique",),
            "de": ("Sonnenuntergang am See",),
        },
        ("#sunset", "#goldenhour", "#sky"),
    ),
    "food": (
        0.15,
        {
            "en": ("Homemade ramen tonight", "Brunch with friends"),
            "es": ("Tacos al pastor",),
            "ja": ("今日のランチ",),
            "pt": ("Feijoada de domingo",),
        },
        ("#food", "#foodie", "#yum"),
    ),
    "travel": (
        0.25,
        {
            "en": ("Exploring the old town", "Mountains again"),
            "de": ("Wandern in den Alpen",),
            "fr": ("Balade à Lisbonne",),
        },
        ("#travel", "#wanderlust", "#mountains"),
    ),
    "ads": (
        -0.7,
        {
            "en": ("New drop, link in bio", "Use code SAVE20 today"),
            "es": ("Oferta por tiempo limitado",),
            "pt": ("Promoção imperdível, link na bio",),
        },
        ("#ad", "#sponsored", "#sale"),
    ),
    "selfie": (
        0.0,
        {"en": ("Monday mood", "New haircut"), "ja": ("自撮り",), "es": ("Nuevo look",)},
        ("#selfie", "#me", "#ootd"),
    ),
}
TOPIC_NAMES = tuple(TOPICS)
TOPIC_WEIGHTS = np.array([18, 12, 20, 14, 10, 26], dtype=float)
EMOJI = ("😍", "🔥", "✨", "🐶", "🌅", "🍜", "❤️", "😂", "🙌")


@dataclass
class Users:
    ids: np.ndarray
    signup_s: np.ndarray  # seconds since epoch, UTC
    activity: np.ndarray
    influence: np.ndarray
    country: np.ndarray  # index into COUNTRIES
    device: np.ndarray  # index into DEVICES
    birth_year: np.ndarray
    first: np.ndarray
    last: np.ndarray


@dataclass
class Photos:
    ids: np.ndarray
    owner: np.ndarray  # user index (id - 1)
    posted_s: np.ndarray
    topic: np.ndarray
    lang: list[str]
    caption: list[str]
    size: np.ndarray
    camera: np.ndarray  # -1 = unknown
    embedding: np.ndarray  # (n, embedding_dim()) float32
    appeal: np.ndarray
    style: PhotoStyle


@dataclass(frozen=True)
class PhotoStyle:
    """What the image embeddings of a world share: one centroid per topic and the direction
    of quality; photos added on later nights reuse their world's."""

    centroids: np.ndarray  # (topics, embedding_dim())
    quality_direction: np.ndarray  # (embedding_dim(),)


def concat(first, second):
    """Users (or Photos) of ``first`` then ``second``: a world grown by a night."""
    values = {}
    for name, value in vars(first).items():
        other = getattr(second, name)
        if isinstance(value, np.ndarray):
            values[name] = np.concatenate([value, other])
        elif isinstance(value, list):
            values[name] = value + other
        else:
            values[name] = value
    return type(first)(**values)


def make_users(rng: np.random.Generator, n: int, start_s: int, end_s: int) -> Users:
    early = rng.random(n) < 0.85
    signup = np.where(
        early,
        rng.integers(start_s - 730 * SECONDS_PER_DAY, start_s, n),
        rng.integers(start_s, max(start_s + 1, end_s - SECONDS_PER_DAY), n),
    )
    return Users(
        ids=np.arange(1, n + 1, dtype=np.int64),
        signup_s=signup.astype(np.int64),
        activity=rng.lognormal(0.0, 1.0, n),
        influence=rng.pareto(1.3, n) + 1.0,
        country=rng.choice(len(COUNTRIES), n, p=COUNTRY_WEIGHTS / COUNTRY_WEIGHTS.sum()),
        device=rng.choice(len(DEVICES), n, p=[0.45, 0.45, 0.10]),
        birth_year=rng.integers(1955, 2010, n),
        first=rng.integers(0, len(FIRST_NAMES), n),
        last=rng.integers(0, len(LAST_NAMES), n),
    )


def make_photos(
    rng: np.random.Generator,
    n: int,
    users: Users,
    start_s: int,
    end_s: int,
    *,
    style: PhotoStyle | None = None,
    first_id: int = 1,
) -> Photos:
    """``n`` photos posted in [start_s, end_s) by ``users``; a new world draws its
    ``style``, a later night passes its world's."""
    poster_weight = np.sqrt(users.activity * users.influence)
    owner = rng.choice(len(users.ids), n, p=poster_weight / poster_weight.sum())
    day = rng.integers(0, max(1, (end_s - start_s) // SECONDS_PER_DAY), n)
    posted = start_s + day * SECONDS_PER_DAY + diurnal_seconds(rng, n)
    posted = np.maximum(posted, users.signup_s[owner] + 3600)
    posted = np.minimum(posted, end_s - 60)
    order = np.argsort(posted, kind="stable")  # photo ids grow with time, as in an app db
    owner, posted = owner[order], posted[order]

    topic = rng.choice(len(TOPIC_NAMES), n, p=TOPIC_WEIGHTS / TOPIC_WEIGHTS.sum())
    if style is None:
        centroids = rng.normal(0.0, 1.0, (len(TOPIC_NAMES), embedding_dim()))
        quality_direction = rng.normal(0.0, 1.0, embedding_dim())
        quality_direction /= np.linalg.norm(quality_direction)
        style = PhotoStyle(centroids, quality_direction)
    centroids, quality_direction = style.centroids, style.quality_direction
    quality = rng.normal(0.0, 1.0, n)
    embedding = (
        centroids[topic] * 0.6
        + rng.normal(0.0, 0.8, (n, embedding_dim()))
        + np.outer(quality, quality_direction) * 1.5
    ).astype(np.float32)

    captions, langs, hashtag_counts = [], [], np.zeros(n)
    n_tags = rng.integers(0, 6, n)
    n_emoji = rng.integers(0, 4, n)
    pick = rng.random((n, 3))
    for i in range(n):
        _, texts, tags = TOPICS[TOPIC_NAMES[topic[i]]]
        lang = sorted(texts)[int(pick[i, 0] * len(texts))]
        options = texts[lang]
        text = options[int(pick[i, 1] * len(options))]
        chosen = [tags[(int(pick[i, 2] * 97) + k) % len(tags)] for k in range(n_tags[i] % 4)]
        emoji = "".join(EMOJI[(i + k) % len(EMOJI)] for k in range(n_emoji[i]))
        captions.append(" ".join([text, emoji, *chosen]).replace("  ", " ").strip())
        langs.append(lang)
        hashtag_counts[i] = len(chosen)
    topic_effect = np.array([TOPICS[name][0] for name in TOPIC_NAMES])[topic]
    appeal = (
        0.7 * np.log(users.influence[owner])
        + 0.5 * quality
        + topic_effect
        + 0.08 * hashtag_counts
        + rng.normal(0.0, 0.35, n)
    )
    camera = np.where(rng.random(n) < 0.1, -1, rng.integers(0, len(CAMERAS), n))
    return Photos(
        ids=np.arange(first_id, first_id + n, dtype=np.int64),
        owner=owner,
        posted_s=posted.astype(np.int64),
        topic=topic,
        lang=langs,
        caption=captions,
        size=rng.integers(0, len(SIZES), n),
        camera=camera,
        embedding=embedding,
        appeal=appeal,
        style=style,
    )


_HOUR_WEIGHTS = np.array(
    [
        2,
        1.2,
        0.8,
        0.5,
        0.4,
        0.6,
        1.2,
        2.2,
        3,
        3.2,
        3.3,
        3.6,
        4.2,
        4.0,
        3.6,
        3.5,
        3.8,
        4.4,
        5.2,
        6.2,
        6.8,
        6.4,
        5.0,
        3.2,
    ]
)


def diurnal_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds into a day, busiest in the evening and quietest before dawn."""
    hours = rng.choice(24, n, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    return hours * 3600 + rng.integers(0, 3600, n)


def weekend_factor(day: datetime) -> float:
    """How much busier than a weekday ``day`` is (weekends: a quarter)."""
    return 1.25 if day.weekday() >= 5 else 1.0


def day_volume_weights(start: datetime, days: int) -> np.ndarray:
    """Relative event volume per day: weekends busier, a slow upward trend."""
    factors = np.array([weekend_factor(start + timedelta(days=d)) for d in range(days)])
    return factors * np.linspace(1.0, 1.15, days)
