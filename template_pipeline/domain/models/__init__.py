"""What a Template record is: field types, the pydantic models, row building, reject reasons.

Validation of whole pages lives in :mod:`template_pipeline.domain.validation`.
"""

from template_pipeline.domain.models.fields import INT_MAX, INT_MIN, MONEY_MAX, REVENUE_MAX
from template_pipeline.domain.models.records import (
    CustomRequest,
    Exhibition,
    Order,
    OrderItem,
    Painting,
    Setting,
    Stats,
    TemplateRecord,
    User,
)

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MONEY_MAX",
    "REVENUE_MAX",
    "CustomRequest",
    "Exhibition",
    "Order",
    "OrderItem",
    "Painting",
    "Setting",
    "Stats",
    "TemplateRecord",
    "User",
]
