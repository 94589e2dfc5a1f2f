#!/usr/bin/env python3
"""Rule files for `make bench`: the shapes real rule sets have (Sigma's and Panther's CloudTrail
rules pin userIdentity, errorCode, userAgent, prefixes), not only exact eventNames.

  gen-rules.py mixed OUT.yaml [N]   N rules (default 990) of mixed shapes, cycling through:
      prefix, suffix and wildcard on eventName; nested exact fields; userAgent prefixes;
      $or of nested fields; envelope form (source/detail-type/detail); equals-ignore-case;
      numeric ranges; exact eventName with anything-but / cidr / exists beside it.
  gen-rules.py pinned OUT.yaml [N]  N rules each pinned to an exact eventName, with one other
      condition each (exists, anything-but, cidr, prefix, wildcard): the mix of earlier benches.
  gen-rules.py root OUT.yaml        the one "root account used" rule.
Values are made up so that the rules seldom fire on the corpus: what is measured is matching.
"""
import sys

MIXED = [
    "{{eventName: [{{prefix: Gen{i}Prefix}}]}}",
    "{{eventName: [{{suffix: Gen{i}Suffix}}]}}",
    "{{eventName: [{{wildcard: 'Gen{i}*Call'}}]}}",
    "{{userIdentity: {{sessionContext: {{sessionIssuer: {{userName: [gen-role-{i}]}}}}}}}}",
    "{{userAgent: [{{prefix: 'gen-agent-{i}/'}}]}}",
    "{{$or: [{{requestParameters: {{bucketName: [gen-bucket-{i}]}}}}, {{responseElements: {{instanceId: [i-gen{i}]}}}}]}}",
    "{{source: [aws.gen{i}], detail-type: [AWS API Call via CloudTrail]}}",
    "{{detail: {{eventName: [GenDetail{i}], userIdentity: {{type: [IAMUser]}}}}}}",
    "{{userIdentity: {{arn: [{{equals-ignore-case: 'arn:aws:iam::123456789012:user/gen-{i}'}}]}}}}",
    "{{requestParameters: {{maxResults: [{{numeric: ['>', {n}]}}]}}, eventName: [{{prefix: List}}]}}",
    "{{eventName: [GenCall{i}], userIdentity: {{type: [{{anything-but: Root}}]}}}}",
    "{{eventName: [GenCall{i}], sourceIPAddress: [{{cidr: 10.0.0.0/8}}], errorCode: [{{exists: true}}]}}",
    "{{errorCode: [GenError{i}], eventSource: [{{suffix: .amazonaws.com}}]}}",
]

PINNED = ["errorCode: [{exists: true}]", "userIdentity: {type: [{anything-but: Root}]}",
          "sourceIPAddress: [{cidr: 10.0.0.0/8}]", "requestParameters: {bucketName: [{prefix: prod-}]}",
          "awsRegion: [{wildcard: 'us-*-1'}]"]


def main():
    kind, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 990
    with open(out, "w") as f:
        f.write("rules:\n")
        if kind == "root":
            f.write("  - id: root-account-used\n    description: the root user made a call\n"
                    "    severity: high\n    pattern: {userIdentity: {type: [Root]}}\n")
            return
        for i in range(n):
            if kind == "mixed":
                pattern = MIXED[i % len(MIXED)].format(i=i, n=100000 + i)
            else:
                pattern = f"{{eventName: [GeneratedCall{i}], {PINNED[i % len(PINNED)]}}}"
            f.write(f"  - id: {kind}-{i}\n    description: generated rule {i}\n"
                    f"    severity: low\n    pattern: {pattern}\n")


if __name__ == "__main__":
    main()
