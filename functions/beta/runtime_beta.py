from runtime_base import SimulatedRuntime


class RuntimeBeta(SimulatedRuntime):
    """Answers with the prompt upper-cased and its word count, as a stand-in for a model."""

    name = "RuntimeBeta"
    default_load_seconds = 3.0
    default_generate_seconds = 1.5

    def compose(self, prompt: str) -> str:
        return f"[beta] {prompt.upper()} ({len(prompt.split())} words)"
