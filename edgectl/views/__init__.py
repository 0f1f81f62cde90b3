"""Pure functions from API or report data (plain dicts) to Rich renderables; nothing here prints.

One module per thing shown: :mod:`.profiles`, :mod:`.compile_report`, :mod:`.models`,
:mod:`.devices`, :mod:`.groups`, :mod:`.deployments`. Data strings are wrapped in ``Text`` so that
brackets in names or messages are never read as Rich markup.
"""
