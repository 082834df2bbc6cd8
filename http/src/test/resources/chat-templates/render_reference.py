# Regenerates the *.expected files: each template rendered by Jinja2 itself, configured as
# transformers renders chat templates (trim_blocks, lstrip_blocks, raise_exception, strftime_now).
# The clock is pinned to 2024-07-26 so that the Java test can pin its own to the same instant.
import datetime, json, pathlib
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.exceptions import TemplateError

here = pathlib.Path(__file__).parent
conversations = json.loads((here / "conversations.json").read_text())

def raise_exception(message):
    raise TemplateError(message)

def strftime_now(fmt):
    return datetime.datetime(2024, 7, 26, 9, 5, 3).strftime(fmt)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now
for path in sorted(here.glob("*.jinja")):
    template = env.from_string(path.read_text())
    for name, messages in conversations.items():
        try:
            out = template.render(messages=messages, add_generation_prompt=True, bos_token="<s>", eos_token="</s>")
        except TemplateError as e:
            out = "ERROR: " + str(e)
        (here / f"{path.stem}.{name}.expected").write_text(out)
