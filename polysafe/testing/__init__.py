"""polysafe's public test kit: check a plugin (benchmark, judge, attack, translator, model backend, prompt set,
cipher, report format) the way polysafe checks its own, with no edit to polysafe's tests.

    from polysafe.testing import check_judge, check_benchmark, check_attack

    def test_my_judge():
        check_judge("mine:openai:any")            # answered by a fake endpoint in the judge's own declared format

    def test_my_benchmark(tmp_path):
        check_benchmark("mybench", {"path": "tests/data/two_languages.csv"}, tmp_path)

- `FakeOpenAI`: a loopback OpenAI-compatible server with scripted answers (`polysafe.testing.server`);
- `FakeModel`: an in-process model backend;
- `check_*`: the contract exercisers (`polysafe.testing.contracts`). A model judge is answered in the format its
  own `format_verdict` declares, for each of its `example_verdicts`, and must read each back; nothing is guessed
  from its rubric's words. A benchmark is built from the parameters you pass, run end to end on the fake model and
  reported in each of its declared formats.
"""

from .contracts import (PROMPTS, check_attack, check_benchmark, check_cipher, check_description, check_judge,
                        check_model, check_prompt_set, check_report, check_translator)
from .fake_model import FakeModel
from .server import FakeOpenAI, Reply

__all__ = ["FakeOpenAI", "Reply", "FakeModel", "PROMPTS", "check_attack", "check_benchmark", "check_cipher",
           "check_description", "check_judge", "check_model", "check_prompt_set", "check_report", "check_translator"]
