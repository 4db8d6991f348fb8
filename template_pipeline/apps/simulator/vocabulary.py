"""The words of the simulated sites: French titles, names, places, statuses and prices."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

CENT = Decimal("0.01")


TITLE_BASES = (
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


TITLE_SUFFIXES = ("", "", "", "", " II", " (étude)", " n°3", ", variation", " — esquisse")


TITLES = tuple(base + suffix for base in TITLE_BASES for suffix in TITLE_SUFFIXES)


CATEGORIES = ("Paysage", "Portrait", "Nature morte", "Abstrait", "Marine", "Scène de genre", "Nu")


TECHNIQUES = (
    "Huile sur toile",
    "Aquarelle",
    "Acrylique",
    "Pastel sec",
    "Gouache",
    "Fusain",
    "Technique mixte",
)


PAINTING_STATUSES = ("Disponible",) * 7 + ("Vendu",) * 2 + ("Réservé",)


# Multiples of 0.5 are exact in binary floating point, so totals add up the same in any type.
PRICES = (*(float(p) for p in range(150, 5001, 50)), 95.5, 249.5, 1299.5, 875.5)


DIMENSIONS = ("30x40 cm", "46x55 cm", "50x65 cm", "60x80 cm", "73x92 cm", "81x100 cm", "24x30 cm")


FIRST_NAMES = (
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


LAST_NAMES = (
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


DOMAINS = ("example.fr", "example.com", "example.org", "exemple.fr")


ORDER_STATUSES = ("En attente", "Payée", "Payée", "Expédiée", "Expédiée", "Annulée")


PAYMENT_METHODS = ("carte", "paypal", "virement")


EXHIBITION_TITLES = (
    "Lumières du Sud",
    "Regards croisés",
    "Couleurs d'été",
    "L'Eau et le Reflet",
    "Paysages intérieurs",
    "Rétrospective : vingt ans d'atelier",
    "Nouvelles œuvres",
    "Salon d'automne",
)


EXHIBITION_DESCRIPTIONS = (
    "Une sélection d'huiles et d'aquarelles récentes.",
    "Exposition collective avec les élèves de l'atelier.",
    "Vernissage en présence de l'artiste, entrée libre.",
    "Œuvres inédites inspirées de la côte bretonne.",
)


LOCATIONS = (
    "Galerie Vivienne, Paris",
    "Espace Saint-Rémy, Bordeaux",
    "Musée des Beaux-Arts, Lyon",
    "La Halle aux Grains, Toulouse",
    "Atelier de l'artiste, Honfleur",
    "Château de la Buzine, Marseille",
)


REQUEST_MESSAGES = (
    "Bonjour, je souhaiterais une commande d'un portrait de famille à l'huile.",
    "Pourriez-vous peindre notre maison de campagne ? Format 60x80 si possible.",
    "Je cherche une aquarelle de la baie de Somme pour un cadeau de mariage.",
    "Est-il possible de réaliser une copie de « La Liseuse » en plus petit format ?",
    "Nous aimerions trois toiles assorties pour le hall de notre hôtel.",
    "Un bouquet de pivoines, couleurs pastel, pour l'anniversaire de ma mère.",
)


REQUEST_STATUSES = ("Nouvelle", "Nouvelle", "En cours", "Traitée", "Refusée")


# Record dates fall in [2023-01-01, 2025-06-30), in UTC; days are formatted once, here.
DAYS = tuple((date(2023, 1, 1) + timedelta(days=d)).isoformat() for d in range(911))


GENERATED_AT = datetime(2025, 6, 30, 18, 0, tzinfo=timezone.utc)


def ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


# (display name, e-mail local part) of every first x last name pair.
PEOPLE = tuple(
    (f"{first} {last}", f"{ascii_slug(first)}.{ascii_slug(last)}")
    for first in FIRST_NAMES
    for last in LAST_NAMES
)
