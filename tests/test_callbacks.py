import pytest
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing.callbacks import LengthCurriculumCallback
from sb3_parsing.vec_env import make_parse_vec_env


class _RecordingCurriculum(LengthCurriculumCallback):
    """Records, at every step, the limit in force and the length of each env's current sentence."""

    def _on_training_start(self) -> None:
        super()._on_training_start()
        self.steps: list[tuple[int | None, list[int]]] = []

    def _on_step(self) -> bool:
        super()._on_step()
        # after an episode's end its info is the ended episode's; the next one is drawn under the limit of this step
        self.steps.append((self._limit, [len(info["sentence"].split()) for info in self.locals["infos"]]))
        return True


@pytest.mark.parametrize("batched", [False, True])
def test_length_curriculum_draws_short_sentences_first_then_all(batched: bool) -> None:
    env_kwargs = dict(max_len=8, max_steps=6)
    make = make_parse_vec_env if batched else make_vec_env
    env = make("LinguisticParse-v0", n_envs=2, seed=0, env_kwargs=env_kwargs)
    callback = _RecordingCurriculum(start_len=3, fraction=0.5)
    DQN("MultiInputPolicy", env, learning_starts=10_000, buffer_size=1_000, seed=0).learn(400, callback=callback)
    limits = [limit for limit, _ in callback.steps]
    assert limits[0] == 3 and limits[-1] == 8 and limits == sorted(limits)
    assert limits.index(8) == pytest.approx(100, abs=2)  # 2 envs: the 200 steps of half the training are 100 calls
    # The first episodes were drawn before training started; from step 6 on (max_steps) every sentence was drawn under
    # the limit of an earlier step, which is no higher
    assert all(max(lengths) <= limit for limit, lengths in callback.steps[6:])
    assert max(max(lengths) for _, lengths in callback.steps[100:]) > 4


def test_length_curriculum_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="need start_len >= 1 and 0 < fraction <= 1, got start_len=0"):
        LengthCurriculumCallback(start_len=0)
    with pytest.raises(ValueError, match=r"fraction=1\.5"):
        LengthCurriculumCallback(fraction=1.5)
