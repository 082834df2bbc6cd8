# Regenerates the "cases" of pretokenizer_splits.json (needs: pip install regex): python3 pretokenizer_splits.py
import regex, json
L3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
Q2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
G2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
def split(pats, s):
    pieces=[s]
    for p in pats:
        out=[]
        for piece in pieces:
            last=0
            for m in regex.finditer(p, piece):
                if m.end()==m.start(): continue
                if m.start()>last: out.append(piece[last:m.start()])
                out.append(m.group()); last=m.end()
            if last<len(piece): out.append(piece[last:])
        pieces=out
    return pieces
samples = ["I'm here", "DON'T STOP", "Hello world", "12345678 apples", "3.14159", "  leading", "trailing  ", "a\n\nb", "line\r\n  next",
 "你好，世界！", "emoji 🙂👍🏽 done", "x  \n y", "tab\there", "ça va? ÇA VA!", "Ελληνικά 123", "naïve café", "a\u00a0b", "!!!\n\n", "we'll've", "hello...   world"]
res = {}
for name, pats in [("llama3",[L3]),("qwen2",[Q2]),("gpt2",[G2]),("smollm",[r"\p{N}",G2]),("default",[r"[\p{P}\$\+<=>\^~\|]+",G2,r"\p{N}+","[0-9][0-9][0-9]"])]:
    res[name] = [[s, split(pats, s)] for s in samples]
print(json.dumps(res, ensure_ascii=False))
