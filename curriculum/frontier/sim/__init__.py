"""A simulated frontier: a local OpenAI-compatible server that plays a frontier model on the
built-in world, perceiving its pictures perfectly and erring at the rates it is given.

    from curriculum.frontier.sim import SimConfig, SimServer
    with SimServer(SimConfig(seed=0, proposal_error=0.2, judge_error=0.1)) as sim:
        ...  # point curriculum.frontier endpoints at sim.url, any api key

Or from the command line: ``lessonloop-sim --port 8765 --latency 2`` (``python -m
curriculum.frontier.sim``). See ``config.py`` for every setting and ``teacher.py`` for how it answers.
"""

from curriculum.frontier.sim.config import SimConfig
from curriculum.frontier.sim.perceive import read_scene
from curriculum.frontier.sim.server import SimServer
from curriculum.frontier.sim.teacher import Teacher

__all__ = ["SimConfig", "SimServer", "Teacher", "read_scene"]
