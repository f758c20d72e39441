from runtime_base import SimulatedRuntime


class RuntimeAlpha(SimulatedRuntime):
    """Answers with the prompt's words reversed, as a stand-in for a model's output."""

    name = "RuntimeAlpha"
    default_load_seconds = 2.0
    default_generate_seconds = 1.0

    def compose(self, prompt: str) -> str:
        words = prompt.split()
        return f"[alpha] {' '.join(reversed(words))}" if words else "[alpha] (empty prompt)"
