"""The Dashboard's read interface: one ``dashboard_<entity>`` view per page it renders.

Revision ID: 0004
Revises: 0003
Create Date: 2025-06-02

Each view has exactly the fields the Dashboard's templates read, under their names, plus
``site`` and the site's ``id``; live rows only (``deleted_at IS NULL``); ``sync_timestamp`` is
``template_sync_state.last_success_at`` of the site and entity, when the site's data was last
confirmed by a successful sync. Order items come as a JSON array of ``{name, price, quantity}``
with ``price`` a JSON number. A later revision that alters a column these views read must drop
and recreate them (PostgreSQL refuses to change the type of a column a view uses).
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _state(alias: str, entity: str) -> str:
    return f"LEFT JOIN template_sync_state AS s ON s.site = {alias}.site AND s.entity = '{entity}'"


_ITEMS = """COALESCE((
    SELECT jsonb_agg(jsonb_build_object('name', x.e -> 'name',
                                        'price', (x.e ->> 'price')::numeric,
                                        'quantity', x.e -> 'quantity') ORDER BY x.n)
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(o.items) = 'array' THEN o.items
                                     ELSE '[]'::jsonb END) WITH ORDINALITY AS x(e, n)
    ), '[]'::jsonb)"""

VIEWS: dict[str, str] = {
    "dashboard_paintings": f"""
SELECT p.site, p.template_id AS id, p.name, p.category, p.price, p.status, p.image_url,
       p.site_name, s.last_success_at AS sync_timestamp
  FROM template_paintings AS p {_state("p", "paintings")}
 WHERE p.deleted_at IS NULL""",
    "dashboard_users": f"""
SELECT u.site, u.template_id AS id, u.name, u.email, u.role, u.create_date, u.site_name,
       s.last_success_at AS sync_timestamp
  FROM template_users AS u {_state("u", "users")}
 WHERE u.deleted_at IS NULL""",
    "dashboard_orders": f"""
SELECT o.site, o.template_id AS id, o.customer_name, o.email, o.total_price, o.order_date,
       o.status, {_ITEMS} AS items, s.last_success_at AS sync_timestamp
  FROM template_orders AS o {_state("o", "orders")}
 WHERE o.deleted_at IS NULL""",
    "dashboard_stats": f"""
SELECT latest.site, latest.payload AS data, latest.fetched_at,
       s.last_success_at AS sync_timestamp
  FROM (SELECT DISTINCT ON (site) site, payload, fetched_at FROM template_stats
         ORDER BY site, id DESC) AS latest {_state("latest", "stats")}""",
    "dashboard_exhibitions": f"""
SELECT e.site, e.template_id AS id, e.title, e.description, e.start_date, e.end_date,
       e.location, s.last_success_at AS sync_timestamp
  FROM template_exhibitions AS e {_state("e", "exhibitions")}
 WHERE e.deleted_at IS NULL""",
    "dashboard_custom_requests": f"""
SELECT c.site, c.template_id AS id, c.name, c.email, c.message, c.budget, c.status,
       c.created_at, s.last_success_at AS sync_timestamp
  FROM template_custom_requests AS c {_state("c", "custom_requests")}
 WHERE c.deleted_at IS NULL""",
    # Secret settings have no value stored (value NULL, is_masked true): nothing to hide here.
    "dashboard_settings": f"""
SELECT t.site, t.key, t.value, t.is_masked, s.last_success_at AS sync_timestamp
  FROM template_settings AS t {_state("t", "settings")}
 WHERE t.deleted_at IS NULL""",
}


def upgrade() -> None:
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
