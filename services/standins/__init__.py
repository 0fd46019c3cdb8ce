"""Stand-ins for third parties, small servers that speak their HTTP APIs: Slack's
Web API (``slack``) and an OpenAI-compatible model API (``llm``).

compose.yaml runs them beside the stack (as warehouse runs ``notgithub``) and the
tests and benchmarks start them in-process. They are for development only: nothing
in a deployable imports them, and they keep what they receive in memory.
"""
