"""The records a simulated site serves: generated from its seed, then mutable by tests.

Generation is deterministic (one ``random.Random`` per entity, seeded from the site's seed and
key: string seeds are hashed with SHA-512, so they do not depend on ``PYTHONHASHSEED``) and fast
enough for benchmark sites of a few hundred thousand records: one pass per entity, no per-record
objects besides the dicts that are served.

The data imitates what Template sites send in the field: French titles and names with accents,
numbers sometimes sent as text, two date formats, optional fields sometimes absent, extra fields
the models do not know, and a share of invalid records (``invalid_ratio``) whose ids and kinds
are recorded in :attr:`SiteData.invalid_kinds` so tests can find them among the rejects.
"""

from __future__ import annotations

import bisect
import random
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from template_pipeline.apps.simulator.config import MASKED, SimSite

# Record entities in the order of the ``full`` export (settings are key/value pairs, not records).
RECORD_ENTITIES: tuple[str, ...] = (
    "paintings",
    "users",
    "orders",
    "exhibitions",
    "custom_requests",
)
TABLES: tuple[str, ...] = ("settings", *RECORD_ENTITIES)

# Kinds of invalid records, per entity; generation cycles through them. Each one breaks a rule
# of template_pipeline.domain.models (required field, no negative money or count, no NUL character,
# user emails and roles), so every invalid record must end up among the rejects. Order and
# custom-request emails are display text there, hence not broken here.
INVALID_KINDS: dict[str, tuple[str, ...]] = {
    "paintings": (
        "negative_price",
        "missing_name",
        "empty_name",
        "nul_in_name",
        "negative_quantity",
    ),
    "users": ("bad_email", "empty_name", "nul_in_name", "unknown_role"),
    "orders": ("negative_item_price", "missing_total_price", "nul_in_customer_name"),
    "exhibitions": ("missing_title", "nul_in_title"),
    "custom_requests": ("negative_budget", "nul_in_message"),
}

_CENT = Decimal("0.01")

# --- vocabulary -----------------------------------------------------------------------------

_TITLE_BASES = (
    "Nature morte aux pêches",
    "Le Café de la Gare",
    "Champ de lavande à Valensole",
    "Bord de Seine au crépuscule",
    "Les Coquelicots",
    "Portrait d'Élise",
    "La Fenêtre ouverte",
    "Marché de Provence",
    "Falaises d'Étretat",
    "Jardin d'hiver",
    "Barques à Collioure",
    "Rue Mouffetard sous la pluie",
    "L'Atelier bleu",
    "La Montagne Sainte-Victoire",
    "Le Pêcheur de Honfleur",
    "Danseuse au repos",
    "Bouquet de pivoines",
    "Été indien",
    "Reflets sur l'étang",
    "Clair de lune à Montmartre",
    "La Liseuse",
    "Forêt de Fontainebleau",
    "Vignes en automne",
    "Le Phare de Ploumanac'h",
    "Composition en ocre",
    "Les Baigneuses",
    "Place des Vosges, matin",
    "Cerisiers en fleurs",
    "Le Pont-Neuf sous la neige",
    "Femme à l'ombrelle",
)
_TITLE_SUFFIXES = ("", "", "", "", " II", " (étude)", " n°3", ", variation", " — esquisse")
_TITLES = tuple(base + suffix for base in _TITLE_BASES for suffix in _TITLE_SUFFIXES)

_CATEGORIES = ("Paysage", "Portrait", "Nature morte", "Abstrait", "Marine", "Scène de genre", "Nu")
_TECHNIQUES = (
    "Huile sur toile",
    "Aquarelle",
    "Acrylique",
    "Pastel sec",
    "Gouache",
    "Fusain",
    "Technique mixte",
)
_PAINTING_STATUSES = ("Disponible",) * 7 + ("Vendu",) * 2 + ("Réservé",)
# Multiples of 0.5 are exact in binary floating point, so totals add up the same in any type.
_PRICES = (*(float(p) for p in range(150, 5001, 50)), 95.5, 249.5, 1299.5, 875.5)
_DIMENSIONS = ("30x40 cm", "46x55 cm", "50x65 cm", "60x80 cm", "73x92 cm", "81x100 cm", "24x30 cm")

_FIRST_NAMES = (
    "Marie",
    "Élise",
    "Hélène",
    "François",
    "Zoé",
    "Chloé",
    "Noël",
    "Jérôme",
    "Amélie",
    "Théo",
    "Léa",
    "Maël",
    "Anaïs",
    "Raphaël",
    "Cécile",
    "Benoît",
    "Gaëlle",
    "Loïc",
    "Inès",
    "Joël",
    "Françoise",
    "Agnès",
    "Stéphane",
    "Béatrice",
)
_LAST_NAMES = (
    "Dupont",
    "Lefèvre",
    "Moreau",
    "Garçon",
    "Bénard",
    "Rousseau",
    "Faure",
    "Chevalier",
    "Lemaître",
    "Mercier",
    "Girard",
    "Bonnefoy",
    "Périer",
    "Duval",
    "Fournier",
    "Lambert",
    "Lacroix",
    "Hébert",
    "Thérond",
    "Brûlé",
    "d'Aubigné",
    "Le Goff",
)
_DOMAINS = ("example.fr", "example.com", "example.org", "exemple.fr")
_ORDER_STATUSES = ("En attente", "Payée", "Payée", "Expédiée", "Expédiée", "Annulée")
_PAYMENT_METHODS = ("carte", "paypal", "virement")

_EXHIBITION_TITLES = (
    "Lumières du Sud",
    "Regards croisés",
    "Couleurs d'été",
    "L'Eau et le Reflet",
    "Paysages intérieurs",
    "Rétrospective : vingt ans d'atelier",
    "Nouvelles œuvres",
    "Salon d'automne",
)
_EXHIBITION_DESCRIPTIONS = (
    "Une sélection d'huiles et d'aquarelles récentes.",
    "Exposition collective avec les élèves de l'atelier.",
    "Vernissage en présence de l'artiste, entrée libre.",
    "Œuvres inédites inspirées de la côte bretonne.",
)
_LOCATIONS = (
    "Galerie Vivienne, Paris",
    "Espace Saint-Rémy, Bordeaux",
    "Musée des Beaux-Arts, Lyon",
    "La Halle aux Grains, Toulouse",
    "Atelier de l'artiste, Honfleur",
    "Château de la Buzine, Marseille",
)
_REQUEST_MESSAGES = (
    "Bonjour, je souhaiterais une commande d'un portrait de famille à l'huile.",
    "Pourriez-vous peindre notre maison de campagne ? Format 60x80 si possible.",
    "Je cherche une aquarelle de la baie de Somme pour un cadeau de mariage.",
    "Est-il possible de réaliser une copie de « La Liseuse » en plus petit format ?",
    "Nous aimerions trois toiles assorties pour le hall de notre hôtel.",
    "Un bouquet de pivoines, couleurs pastel, pour l'anniversaire de ma mère.",
)
_REQUEST_STATUSES = ("Nouvelle", "Nouvelle", "En cours", "Traitée", "Refusée")

# Record dates fall in [2023-01-01, 2025-06-30), in UTC; days are formatted once, here.
_DAYS = tuple((date(2023, 1, 1) + timedelta(days=d)).isoformat() for d in range(911))
_GENERATED_AT = datetime(2025, 6, 30, 18, 0, tzinfo=timezone.utc)


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


# (display name, e-mail local part) of every first x last name pair.
_PEOPLE = tuple(
    (f"{first} {last}", f"{_ascii_slug(first)}.{_ascii_slug(last)}")
    for first in _FIRST_NAMES
    for last in _LAST_NAMES
)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _site_rng(site: SimSite, entity: str) -> random.Random:
    # One stream per entity: growing one entity does not reshuffle the others.
    return random.Random(f"template-simulator:{site.seed}:{site.key}:{entity}")


class _Picker:
    """Draws from one seeded stream (``random.choice`` costs several times more).

    The loops over large entities (paintings, orders) inline these draws instead: a method
    call per field is most of their cost.
    """

    __slots__ = ("random",)

    def __init__(self, rng: random.Random) -> None:
        self.random = rng.random

    def pick(self, options: tuple[Any, ...]) -> Any:
        return options[int(self.random() * len(options))]

    def below(self, n: int) -> int:
        return int(self.random() * n)

    def chance(self, p: float) -> bool:
        return self.random() < p

    def timestamp(self) -> str:
        """A record date, in one of the two formats Template sites send."""
        rnd = self.random
        day = _DAYS[int(rnd() * len(_DAYS))]
        seconds = int(rnd() * 86400)
        clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return f"{day} {clock}" if rnd() < 0.6 else f"{day}T{clock}Z"


def _money(value: Decimal, as_text: bool) -> str | float:
    value = value.quantize(_CENT)
    return f"{value:.2f}" if as_text else float(value)


def to_decimal(value: Any) -> Decimal | None:
    """A price as a Decimal, from a number or numeric text; None when it is neither."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(value) if isinstance(value, (str, Decimal)) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


# --- generators ------------------------------------------------------------------------------


def _settings(site: SimSite) -> list[dict[str, Any]]:
    rng = _site_rng(site, "settings")
    slug = _ascii_slug(site.display_name) or "site"
    values: list[tuple[str, Any]] = [
        ("site_name", site.display_name),
        ("site_logo", "Images/logo.png"),
        ("site_description", "Peintures originales, aquarelles et commandes sur mesure."),
        ("contact_email", f"contact@{slug}.example.fr"),
        ("contact_phone", "01 23 45 67 89"),
        ("primary_color", rng.choice(("#8B4513", "#2F4F4F", "#6A5ACD", "#B22222"))),
        ("currency", "EUR"),
        ("language", "fr"),
        ("stripe_publishable_key", f"pk_test_{rng.getrandbits(96):024x}"),
        ("stripe_secret_key", MASKED),
        ("smtp_host", "smtp.example.fr"),
        ("smtp_password", MASKED),
        ("saas_site_price_cache", rng.choice(("19.90", "29.90", "49.00"))),
        ("instagram_url", f"https://instagram.example/{slug}"),
    ]
    return [{"key": key, "value": value} for key, value in values]


def _paintings(site: SimSite, site_name: str) -> list[dict[str, Any]]:
    rnd = _site_rng(site, "paintings").random
    titles, prices, statuses = _TITLES, _PRICES, _PAINTING_STATUSES
    categories, techniques, dimensions = _CATEGORIES, _TECHNIQUES, _DIMENSIONS
    records = []
    append = records.append
    for pid in range(1, site.paintings + 1):
        price = prices[int(rnd() * len(prices))]
        record: dict[str, Any] = {
            "id": pid,
            "name": titles[int(rnd() * len(titles))],
            "price": f"{price:.2f}" if rnd() < 0.4 else price,
        }
        if rnd() >= 0.05:
            record["category"] = categories[int(rnd() * len(categories))]
        if rnd() >= 0.05:
            record["technique"] = techniques[int(rnd() * len(techniques))]
        year = 1975 + int(rnd() * 51)
        year_form = rnd()
        if year_form < 0.6:
            record["year"] = year
        elif year_form < 0.9:
            record["year"] = str(year)
        status = statuses[int(rnd() * len(statuses))]
        if status == "Vendu":
            record["quantity"] = 0
        else:
            # Originals are unique; prints come in small series.
            record["quantity"] = 1 if rnd() < 0.8 else 2 + int(rnd() * 9)
        record["status"] = status
        record["image"] = f"Images/painting_{pid}.jpg"
        record["display_order"] = pid
        record["site_name"] = site_name
        if rnd() < 0.3:
            # Not in the documented fields: models must keep it, not fail on it.
            record["dimensions"] = dimensions[int(rnd() * len(dimensions))]
        append(record)
    return records


def _person(r: _Picker, seen: dict[str, int] | None) -> tuple[str, str]:
    """A name and its e-mail; with ``seen``, e-mails are unique (``marie.dupont2@...``)."""
    name, local = r.pick(_PEOPLE)
    email = f"{local}@{r.pick(_DOMAINS)}"
    if seen is not None:
        # Numbered suffixes never collide with plain addresses (those have no digit).
        count = seen.get(email, 0) + 1
        seen[email] = count
        if count > 1:
            email = email.replace("@", f"{count}@")
    return name, email


def _users(site: SimSite, site_name: str) -> list[dict[str, Any]]:
    r = _Picker(_site_rng(site, "users"))
    seen: dict[str, int] = {}
    records = []
    for uid in range(1, site.users + 1):
        name, email = _person(r, seen)
        record: dict[str, Any] = {
            "id": uid,
            "name": name,
            "email": email,
            "create_date": r.timestamp(),
        }
        role_draw = r.random()
        if uid == 1 or role_draw < 0.05:
            record["role"] = "admin"
        elif role_draw < 0.85:
            record["role"] = "user"
        # else: no role at all, which means "user"
        record["site_name"] = site_name
        if r.chance(0.25):
            record["phone"] = f"06 {r.below(100):02d} {r.below(100):02d} {r.below(100):02d} 00"
        records.append(record)
    return records


def order_total(items: list[dict[str, Any]]) -> Decimal:
    """Sum of price x quantity over an order's items (the total of a valid order)."""
    total = Decimal(0)
    for item in items:
        price = to_decimal(item.get("price")) or Decimal(0)
        total += price * int(item.get("quantity") or 0)
    return total.quantize(_CENT)


def _orders(
    site: SimSite, site_name: str, paintings: list[dict[str, Any]], valid_painting_rows: list[int]
) -> list[dict[str, Any]]:
    r = _Picker(_site_rng(site, "orders"))
    rnd = r.random
    # Item fields of each orderable painting, prices as floats: every price is a multiple of
    # 0.5, so float sums are exact and the total is the Decimal sum too.
    offers = [
        (p["id"], p["name"], p["image"], float(p["price"]))
        for p in (paintings[row] for row in valid_painting_rows)
    ]
    records = []
    for oid in range(1, site.orders + 1):
        name, email = _person(r, None)
        items = []
        total = 0.0
        if offers:
            for _ in range(1 + (rnd() < 0.3) + (rnd() < 0.1)):
                painting_id, title, image, price = offers[int(rnd() * len(offers))]
                quantity = 1 if rnd() < 0.85 else 2
                total += price * quantity
                items.append(
                    {
                        "painting_id": painting_id,
                        "name": title,
                        "image": image,
                        "price": price,
                        "quantity": quantity,
                    }
                )
        record: dict[str, Any] = {
            "id": oid,
            "customer_name": name,
            "email": email,
            "total_price": f"{total:.2f}" if rnd() < 0.5 else total,
            "order_date": r.timestamp(),
            "status": r.pick(_ORDER_STATUSES),
            "items": items,
            "site_name": site_name,
        }
        if rnd() < 0.5:
            record["payment_method"] = r.pick(_PAYMENT_METHODS)
        records.append(record)
    return records


def _exhibitions(site: SimSite) -> list[dict[str, Any]]:
    r = _Picker(_site_rng(site, "exhibitions"))
    records = []
    for eid in range(1, site.exhibitions + 1):
        start = date(2024, 1, 1) + timedelta(days=r.below(700))
        record: dict[str, Any] = {
            "id": eid,
            "title": r.pick(_EXHIBITION_TITLES),
            "description": r.pick(_EXHIBITION_DESCRIPTIONS),
            "start_date": start.isoformat(),
            "end_date": (start + timedelta(days=14 + r.below(80))).isoformat(),
            "location": r.pick(_LOCATIONS),
        }
        if r.chance(0.5):
            record["vernissage"] = f"{start.isoformat()} 18:30"
        records.append(record)
    return records


def _custom_requests(site: SimSite) -> list[dict[str, Any]]:
    r = _Picker(_site_rng(site, "custom_requests"))
    records = []
    for rid in range(1, site.custom_requests + 1):
        name, email = _person(r, None)
        record: dict[str, Any] = {"id": rid, "name": name, "email": email}
        record["message"] = r.pick(_REQUEST_MESSAGES)
        budget_form = r.random()
        budget = 200.0 + 50 * r.below(60)
        if budget_form < 0.5:
            record["budget"] = budget
        elif budget_form < 0.85:
            record["budget"] = f"{budget:.2f}"
        record["status"] = r.pick(_REQUEST_STATUSES)
        record["created_at"] = r.timestamp()
        records.append(record)
    return records


# --- invalid records -------------------------------------------------------------------------


def _negate(value: Any) -> Any:
    number = to_decimal(value)
    if number is None:
        return -1.0
    negative = -abs(number) if number else Decimal("-1")
    return f"{negative:.2f}" if isinstance(value, str) else float(negative)


def _insert_nul(text: Any) -> str:
    text = str(text or "x")
    cut = max(1, len(text) // 2)
    return text[:cut] + "\x00" + text[cut:]


def _corrupt(entity: str, kind: str, record: dict[str, Any]) -> None:
    if kind == "negative_price":
        record["price"] = _negate(record.get("price"))
    elif kind == "missing_name":
        record.pop("name", None)
    elif kind == "empty_name":
        record["name"] = ""
    elif kind == "nul_in_name":
        record["name"] = _insert_nul(record.get("name"))
    elif kind == "negative_quantity":
        record["quantity"] = -1
    elif kind == "bad_email":
        # No "@": wrong under any email rule, however lenient.
        record["email"] = str(record.get("email", "x@example.fr")).replace("@", ".")
    elif kind == "unknown_role":
        record["role"] = "superadmin"
    elif kind == "negative_item_price":
        items = record["items"]
        items[0]["price"] = _negate(items[0]["price"])
        # Keep the total arithmetic right: only the item price is wrong.
        record["total_price"] = _money(
            order_total(items), as_text=isinstance(record["total_price"], str)
        )
    elif kind == "missing_total_price":
        record.pop("total_price", None)
    elif kind == "nul_in_customer_name":
        record["customer_name"] = _insert_nul(record.get("customer_name"))
    elif kind == "missing_title":
        record.pop("title", None)
    elif kind == "nul_in_title":
        record["title"] = _insert_nul(record.get("title"))
    elif kind == "negative_budget":
        record["budget"] = _negate(record.get("budget", 500.0))
    elif kind == "nul_in_message":
        record["message"] = _insert_nul(record.get("message"))
    else:  # pragma: no cover - INVALID_KINDS and this function are kept together
        raise ValueError(f"unknown invalid kind {kind!r} for {entity}")


def _invalid_count(n: int, ratio: float) -> int:
    if n == 0 or ratio <= 0:
        return 0
    # At least one as soon as the ratio is positive: small demo sites must show a reject.
    return min(n, max(1, round(n * ratio)))


def _make_invalid(site: SimSite, entity: str, records: list[dict[str, Any]]) -> dict[int, str]:
    rng = _site_rng(site, f"{entity}:invalid")
    rows = sorted(rng.sample(range(len(records)), _invalid_count(len(records), site.invalid_ratio)))
    kinds = INVALID_KINDS[entity]
    offset = rng.randrange(len(kinds))
    chosen: dict[int, str] = {}
    for j, row in enumerate(rows):
        kind = kinds[(j + offset) % len(kinds)]
        record = records[row]
        if kind == "negative_item_price" and not record["items"]:
            kind = "missing_total_price"  # an order without items has no item price to break
        _corrupt(entity, kind, record)
        chosen[record["id"]] = kind
    return chosen


# --- the data of one site --------------------------------------------------------------------


class SiteData:
    """The records one simulated site serves, as the plain dicts that are serialised.

    Lists are kept ordered by ``id`` (pagination slices them); the mutators keep that order.
    Tests may also edit the dicts directly and then call :meth:`touch`. ``lock`` is held by the
    server while it reads a response, and by the mutators, so a test thread never changes a
    list halfway through a page.
    """

    def __init__(
        self,
        *,
        site_key: str,
        site_name: str,
        settings: list[dict[str, Any]],
        paintings: list[dict[str, Any]],
        users: list[dict[str, Any]],
        orders: list[dict[str, Any]],
        exhibitions: list[dict[str, Any]],
        custom_requests: list[dict[str, Any]],
        invalid_kinds: dict[str, dict[int, str]] | None = None,
        last_updated: datetime = _GENERATED_AT,
    ) -> None:
        self.site_key = site_key
        self.site_name = site_name
        self.settings = settings
        self.paintings = paintings
        self.users = users
        self.orders = orders
        self.exhibitions = exhibitions
        self.custom_requests = custom_requests
        # entity -> {id: kind} of the records generated invalid on purpose.
        self.invalid_kinds: dict[str, dict[int, str]] = {
            entity: dict((invalid_kinds or {}).get(entity, {})) for entity in RECORD_ENTITIES
        }
        self.lock = threading.RLock()
        self._last_updated = last_updated

    def __repr__(self) -> str:
        sizes = ", ".join(f"{entity}={len(self.records(entity))}" for entity in RECORD_ENTITIES)
        return f"SiteData({self.site_key!r}, {sizes})"

    # -- reading --

    @property
    def invalid_ids(self) -> dict[str, set[int]]:
        """entity -> ids of the records generated invalid (they must end up in rejects)."""
        return {entity: set(kinds) for entity, kinds in self.invalid_kinds.items()}

    @property
    def last_updated(self) -> str:
        return iso_utc(self._last_updated)

    def records(self, entity: str) -> list[dict[str, Any]]:
        if entity not in TABLES:
            raise KeyError(
                f"simulated site {self.site_key!r}: unknown entity {entity!r} "
                f"(known: {', '.join(TABLES)})"
            )
        return getattr(self, entity)

    def total_records(self) -> int:
        return sum(len(self.records(table)) for table in TABLES)

    def stats(self) -> dict[str, Any]:
        """The ``stats`` export, computed from the lists as they are now."""
        with self.lock:
            statuses = Counter(p.get("status") for p in self.paintings)
            revenue = Decimal(0)
            for order in self.orders:
                # A real site's revenue sums what customers paid: the deliberately broken orders
                # (negative totals) would make it negative, which no site reports.
                total = to_decimal(order.get("total_price"))
                if total is not None and total > 0:
                    revenue += total
            return {
                "paintings": len(self.paintings),
                "users": len(self.users),
                "orders": len(self.orders),
                "exhibitions": len(self.exhibitions),
                "custom_requests": len(self.custom_requests),
                "revenue": f"{revenue.quantize(_CENT):.2f}",
                "available_paintings": statuses["Disponible"],
                "sold_paintings": statuses["Vendu"],
                "last_updated": self.last_updated,
            }

    def get_record(self, entity: str, record_id: int) -> dict[str, Any]:
        with self.lock:
            records = self.records(entity)
            return records[self._index(entity, records, record_id)]

    # -- mutators (each bumps last_updated) --

    def touch(self) -> str:
        """Mark the site as changed now; returns the new ``last_updated``.

        Strictly increasing, even for several changes within one second, so a client polling
        ``stats`` always sees a change.
        """
        with self.lock:
            now = datetime.now(timezone.utc).replace(microsecond=0)
            self._last_updated = max(now, self._last_updated + timedelta(seconds=1))
            return self.last_updated

    def update_record(self, entity: str, record_id: int, **fields: Any) -> dict[str, Any]:
        with self.lock:
            record = self.get_record(entity, record_id)
            if "id" in fields and fields["id"] != record_id:
                raise ValueError(
                    f"simulated site {self.site_key!r}: the id of {entity} {record_id} "
                    "cannot be changed (delete and add instead)"
                )
            record.update(fields)
            self.touch()
            return record

    def delete_record(self, entity: str, record_id: int) -> dict[str, Any]:
        with self.lock:
            records = self.records(entity)
            record = records.pop(self._index(entity, records, record_id))
            self.invalid_kinds.get(entity, {}).pop(record_id, None)
            self.touch()
            return record

    def add_record(self, entity: str, **fields: Any) -> dict[str, Any]:
        """Insert a record (``id`` defaults to the largest id + 1), keeping the id order."""
        with self.lock:
            records = self.records(entity)
            if entity == "settings":
                raise ValueError("use set_setting(key, value) for settings")
            record_id = fields.pop("id", None)
            if record_id is None:
                record_id = (records[-1]["id"] + 1) if records else 1
            if not isinstance(record_id, int) or isinstance(record_id, bool):
                raise ValueError(f"{entity} id must be an integer, got {record_id!r}")
            position = bisect.bisect_left(records, record_id, key=_record_id)
            if position < len(records) and records[position]["id"] == record_id:
                raise ValueError(
                    f"simulated site {self.site_key!r}: {entity} {record_id} already exists"
                )
            record = {"id": record_id, **fields}
            records.insert(position, record)
            self.touch()
            return record

    def set_setting(self, key: str, value: Any) -> None:
        with self.lock:
            for entry in self.settings:
                if entry["key"] == key:
                    entry["value"] = value
                    break
            else:
                self.settings.append({"key": key, "value": value})
            self.touch()

    def delete_setting(self, key: str) -> None:
        with self.lock:
            before = len(self.settings)
            self.settings[:] = [entry for entry in self.settings if entry["key"] != key]
            if len(self.settings) == before:
                raise KeyError(f"simulated site {self.site_key!r}: no setting {key!r}")
            self.touch()

    def update_painting(self, painting_id: int, **fields: Any) -> dict[str, Any]:
        return self.update_record("paintings", painting_id, **fields)

    def delete_painting(self, painting_id: int) -> dict[str, Any]:
        return self.delete_record("paintings", painting_id)

    def add_painting(self, **fields: Any) -> dict[str, Any]:
        """A new, valid painting; ``fields`` override the defaults (``id`` included)."""
        with self.lock:
            record_id = fields.pop("id", None)
            if record_id is None:
                record_id = (self.paintings[-1]["id"] + 1) if self.paintings else 1
            defaults: dict[str, Any] = {
                "name": f"Nouvelle œuvre n°{record_id}",
                "price": 800.0,
                "category": "Paysage",
                "technique": "Huile sur toile",
                "year": 2025,
                "quantity": 1,
                "status": "Disponible",
                "image": f"Images/painting_{record_id}.jpg",
                "display_order": record_id,
                "site_name": self.site_name,
            }
            return self.add_record("paintings", id=record_id, **{**defaults, **fields})

    def add_order(
        self, items: list[tuple[int, int]] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A new order of ``(painting_id, quantity)`` pairs with the matching total.

        Without ``items``: one copy of the first painting. ``fields`` override anything,
        ``total_price`` included (to serve an order whose total does not add up).
        """
        with self.lock:
            if items is None:
                if not self.paintings:
                    raise ValueError(f"simulated site {self.site_key!r} has no painting to order")
                items = [(self.paintings[0]["id"], 1)]
            lines = []
            for painting_id, quantity in items:
                painting = self.get_record("paintings", painting_id)
                lines.append(
                    {
                        "painting_id": painting_id,
                        "name": painting.get("name"),
                        "image": painting.get("image"),
                        "price": float(to_decimal(painting.get("price")) or 0),
                        "quantity": quantity,
                    }
                )
            defaults: dict[str, Any] = {
                "customer_name": "Hélène Moreau",
                "email": "helene.moreau@example.fr",
                "total_price": f"{order_total(lines):.2f}",
                "order_date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                "status": "En attente",
                "items": lines,
                "site_name": self.site_name,
            }
            return self.add_record("orders", **{**defaults, **fields})

    def _index(self, entity: str, records: list[dict[str, Any]], record_id: int) -> int:
        try:
            position = bisect.bisect_left(records, record_id, key=_record_id)
            if position < len(records) and records[position]["id"] == record_id:
                return position
        except (KeyError, TypeError):
            pass  # a test broke the id order or an id: fall back to a scan
        for position, record in enumerate(records):
            if record.get("id") == record_id:
                return position
        raise KeyError(f"simulated site {self.site_key!r}: no {entity} with id {record_id!r}")


def _record_id(record: dict[str, Any]) -> Any:
    return record["id"]


def generate_site_data(site: SimSite) -> SiteData:
    """The records of ``site``, the same for the same site definition (seed, key, sizes)."""
    site_name = site.display_name
    paintings = _paintings(site, site_name)
    invalid = {"paintings": _make_invalid(site, "paintings", paintings)}
    # Orders reference valid paintings only: an order is invalid only where it is made so.
    valid_rows = [row for row, p in enumerate(paintings) if p["id"] not in invalid["paintings"]]
    generators: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "users": lambda: _users(site, site_name),
        "orders": lambda: _orders(site, site_name, paintings, valid_rows),
        "exhibitions": lambda: _exhibitions(site),
        "custom_requests": lambda: _custom_requests(site),
    }
    lists: dict[str, list[dict[str, Any]]] = {"paintings": paintings}
    for entity, generate in generators.items():
        lists[entity] = generate()
        invalid[entity] = _make_invalid(site, entity, lists[entity])
    return SiteData(
        site_key=site.key,
        site_name=site_name,
        settings=_settings(site),
        invalid_kinds=invalid,
        last_updated=_GENERATED_AT,
        **lists,
    )
