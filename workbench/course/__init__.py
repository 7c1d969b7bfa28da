"""The course tooling, apart from the library core: running the numbered notebooks (``notebooks``: full mode for
``make figures``, fast mode in the tests), the static site of the lessons and the API reference (``site``), and
the classroom Jupyter server extension that keeps the lessons' outputs out of git (``classroom``)."""
