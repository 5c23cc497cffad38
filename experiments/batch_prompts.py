"""Write a prompt file for `procseq generate --prompts`: N test-compositional prompts of the base domains.

    python experiments/batch_prompts.py N OUT.jsonl     (BENCHMARKS.md, "Speed": batch generation)
"""

from __future__ import annotations

import json
import sys

from procseq.data.synthetic import DOMAIN_PLAN, generate

n, out = int(sys.argv[1]), sys.argv[2]
domains = [d for d, plan in DOMAIN_PLAN.items() if plan.role == "base"]
with open(out, "w") as f:
    for i in range(n):
        domain = domains[i % len(domains)]
        spec, _ = generate(domain, i, split="test-compositional")
        f.write(json.dumps({"prompt": spec.prompt, "domain": domain, "frames": spec.num_frames, "seed": i}) + "\n")
print(f"wrote {n} prompts to {out}")
