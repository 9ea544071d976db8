"""The fixed category taxonomy of intents: a small two-level tree.

A category id is ``<root>`` or ``<root>.<leaf>`` (``electronics``, ``electronics.laptops``). An
intent may name either; a vendor filtering by a category gets its whole subtree, so
``electronics`` matches ``electronics.laptops`` and ``electronics`` itself. Ids never change
meaning; new leaves may be added.
"""

from __future__ import annotations

from dataclasses import dataclass

from vault.errors import InvalidInput

MAX_CATEGORY = 64

_TREE: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("electronics", "Electronics"): [
        ("laptops", "Laptops"),
        ("phones", "Phones"),
        ("tablets", "Tablets"),
        ("tv-audio", "TV and audio"),
        ("cameras", "Cameras"),
        ("gaming", "Gaming"),
    ],
    ("travel", "Travel"): [
        ("flights", "Flights"),
        ("hotels", "Hotels"),
        ("rail", "Rail"),
        ("car-rental", "Car rental"),
        ("packages", "Package holidays"),
    ],
    ("home", "Home"): [
        ("furniture", "Furniture"),
        ("appliances", "Appliances"),
        ("kitchen", "Kitchen"),
        ("garden", "Garden"),
        ("diy", "Tools and DIY"),
    ],
    ("sports", "Sports and outdoors"): [
        ("bicycles", "Bicycles"),
        ("fitness", "Fitness"),
        ("camping", "Camping and hiking"),
        ("winter-sports", "Winter sports"),
    ],
    ("fashion", "Fashion"): [
        ("clothing", "Clothing"),
        ("shoes", "Shoes"),
        ("accessories", "Accessories"),
    ],
    ("vehicles", "Vehicles"): [
        ("cars", "Cars"),
        ("motorcycles", "Motorcycles"),
        ("parts", "Parts and accessories"),
    ],
    ("food", "Food and drink"): [
        ("restaurants", "Restaurants"),
        ("takeaway", "Takeaway and delivery"),
        ("groceries", "Groceries"),
    ],
    ("services", "Services"): [
        ("insurance", "Insurance"),
        ("energy", "Energy"),
        ("telecom", "Phone and internet"),
        ("home-services", "Home services"),
        ("financial", "Financial services"),
    ],
}


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    label: str
    root: str
    """The id of the top-level category this one belongs to (itself for a root)."""
    path_label: str
    """``Electronics > Laptops``."""

    @property
    def is_root(self) -> bool:
        return self.id == self.root


def _build() -> dict[str, Category]:
    found: dict[str, Category] = {}
    for (root, root_label), leaves in _TREE.items():
        found[root] = Category(root, root_label, root, root_label)
        for leaf, label in leaves:
            cid = f"{root}.{leaf}"
            found[cid] = Category(cid, label, root, f"{root_label} > {label}")
    return found


CATEGORIES: dict[str, Category] = _build()
ROOTS: list[Category] = [c for c in CATEGORIES.values() if c.is_root]


def children(root: str) -> list[Category]:
    return [c for c in CATEGORIES.values() if c.root == root and not c.is_root]


def get(category_id: object, *, field: str = "category") -> Category:
    """The category with this id; anything else is a clear 400."""
    if not isinstance(category_id, str) or not category_id.strip():
        raise InvalidInput("Choose a category.", field=field)
    found = CATEGORIES.get(category_id.strip().lower())
    if found is None:
        shown = category_id[:MAX_CATEGORY]
        raise InvalidInput(
            f"There is no category {shown!r}. The categories are listed at "
            "/vendor/v1/categories (for example 'electronics' or 'electronics.laptops').",
            field=field,
        )
    return found


def subtree(category: Category) -> list[str]:
    """The ids a filter on ``category`` matches: itself and, for a root, every leaf."""
    if not category.is_root:
        return [category.id]
    return [category.id, *(c.id for c in children(category.id))]


def as_tree() -> list[dict[str, object]]:
    """The taxonomy as JSON for the vendor API."""
    return [
        {
            "id": root.id,
            "label": root.label,
            "children": [{"id": c.id, "label": c.label} for c in children(root.id)],
        }
        for root in ROOTS
    ]
