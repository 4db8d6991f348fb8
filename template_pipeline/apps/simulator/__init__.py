"""A Template export API simulator, for the demo, the tests and the benchmarks.

Sites are described by :class:`SimSite` (size, envelope, page cap, deterministic
:class:`Faults`); their records are generated from a seed (:func:`generate_site_data`) and served
by a Starlette application (:func:`build_app`), run in a background thread by
:class:`SimulatorServer` or in the foreground by :func:`serve`.
"""

from template_pipeline.apps.simulator.app import ENDPOINTS, LIST_ENDPOINTS, build_app
from template_pipeline.apps.simulator.config import Faults, SimSite, demo_sites
from template_pipeline.apps.simulator.data import SiteData, generate_site_data
from template_pipeline.apps.simulator.invalid import INVALID_KINDS
from template_pipeline.apps.simulator.server import SimulatorServer, api_key_env_name, serve

__all__ = [
    "ENDPOINTS",
    "INVALID_KINDS",
    "LIST_ENDPOINTS",
    "Faults",
    "SimSite",
    "SimulatorServer",
    "SiteData",
    "api_key_env_name",
    "build_app",
    "demo_sites",
    "generate_site_data",
    "serve",
]
