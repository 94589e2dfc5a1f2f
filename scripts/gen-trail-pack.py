#!/usr/bin/env python3
"""Writes rules/trail.yaml: the calls that blind the pipeline (a trail stopped, deleted or
changed, management events dropped, the trail bucket's notifications changed or the bucket
deleted), each with tests that fire and stay quiet. Test records follow the CloudTrail User
Guide's record shape (eventVersion 1.08, an IAM user calling from the console). Run it after
changing a rule here; the file is committed.
"""
import copy, json, os
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pack_guidance import annotate  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BASE = {"eventVersion": "1.08", "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::123456789012:user/Mateo", "accountId": "123456789012", "userName": "Mateo"},
        "eventTime": "2024-01-10T08:00:00Z", "eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging", "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7", "userAgent": "console.amazonaws.com", "requestParameters": {"name": "arn:aws:cloudtrail:us-east-1:123456789012:trail/management"},
        "responseElements": None, "requestID": "7b0e6c1e-2f5a-4f3e-9d1c-0a1b2c3d4e5f", "eventID": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "readOnly": False, "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": "123456789012", "eventCategory": "Management"}


def rec(name, source="cloudtrail.amazonaws.com", params=None, error=None):
    r = copy.deepcopy(BASE)
    r["eventName"], r["eventSource"] = name, source
    if params is not None:
        r["requestParameters"] = params
    if error:
        r["errorCode"], r["errorMessage"] = error, "User: arn:aws:iam::123456789012:user/Mateo is not authorized"
    return r


def rule(rid, description, severity, pattern, tests):
    out = [f"  - id: {rid}", f"    description: {json.dumps(description)}", f"    severity: {severity}",
           f"    pattern: {json.dumps(pattern)}", "    tests:"]
    for name, expect, record in tests:
        out += [f"      - name: {json.dumps(name)}", f"        expect: {'true' if expect else 'false'}",
                f"        record: {json.dumps(record)}"]
    return "\n".join(out)


ok = {"errorCode": [{"exists": False}]}
selectors_off = {"trailName": "management", "eventSelectors": [{"readWriteType": "All", "includeManagementEvents": False, "dataResources": [{"type": "AWS::S3::Object", "values": ["arn:aws:s3"]}]}]}
selectors_on = {"trailName": "management", "eventSelectors": [{"readWriteType": "All", "includeManagementEvents": True}]}
advanced_data_only = {"trailName": "management", "advancedEventSelectors": [{"name": "data only", "fieldSelectors": [{"field": "eventCategory", "equals": ["Data"]}, {"field": "resources.type", "equals": ["AWS::S3::Object"]}]}]}
advanced_management = {"trailName": "management", "advancedEventSelectors": [{"name": "management", "fieldSelectors": [{"field": "eventCategory", "equals": ["Management"]}]}]}

rules = [
    rule("trail-logging-stopped", "A trail was stopped or deleted (StopLogging, DeleteTrail): its account stops being recorded.", "critical",
         dict({"eventSource": ["cloudtrail.amazonaws.com"], "eventName": ["StopLogging", "DeleteTrail"]}, **ok),
         [("fires on StopLogging", True, rec("StopLogging")), ("fires on DeleteTrail", True, rec("DeleteTrail")),
          ("quiet on a refused StopLogging", False, rec("StopLogging", error="AccessDenied")),
          ("quiet on StartLogging", False, rec("StartLogging"))]),
    rule("trail-changed", "A trail's settings were changed (UpdateTrail): its bucket, prefix, encryption or scope may have moved.", "high",
         dict({"eventSource": ["cloudtrail.amazonaws.com"], "eventName": ["UpdateTrail"]}, **ok),
         [("fires on UpdateTrail", True, rec("UpdateTrail", params={"name": "management", "s3BucketName": "elsewhere"})),
          ("quiet on DescribeTrails", False, rec("DescribeTrails", params={}))]),
    rule("trail-management-events-dropped", "A trail's event selectors no longer record management events (PutEventSelectors with includeManagementEvents false, or advanced selectors for another event category only).", "high",
         dict({"eventSource": ["cloudtrail.amazonaws.com"], "eventName": ["PutEventSelectors"],
               "$or": [{"requestParameters": {"eventSelectors": {"includeManagementEvents": [False]}}},
                       {"requestParameters": {"advancedEventSelectors": {"fieldSelectors": {"field": ["eventCategory"], "equals": [{"anything-but": "Management"}]}}}}]}, **ok),
         [("fires when includeManagementEvents is false", True, rec("PutEventSelectors", params=selectors_off)),
          ("fires on advanced selectors for data events only", True, rec("PutEventSelectors", params=advanced_data_only)),
          ("quiet when management events stay", False, rec("PutEventSelectors", params=selectors_on)),
          ("quiet on advanced selectors for management events", False, rec("PutEventSelectors", params=advanced_management))]),
    rule("trail-bucket-notification-changed", "A bucket's event notifications were replaced, or a bucket deleted: if it is the trail's bucket, deliveries may no longer reach trail-alerts (the function, which knows its trail buckets from ALLOWED_BUCKETS, alerts on those alone and counts the rest as suppressed).", "medium",
         dict({"eventSource": ["s3.amazonaws.com"], "eventName": ["PutBucketNotificationConfiguration", "PutBucketNotification", "DeleteBucket"]}, **ok),
         [("fires on PutBucketNotificationConfiguration", True, rec("PutBucketNotificationConfiguration", "s3.amazonaws.com", {"bucketName": "trail-bucket", "notification": ""})),
          ("fires on DeleteBucket", True, rec("DeleteBucket", "s3.amazonaws.com", {"bucketName": "trail-bucket"})),
          ("quiet on GetBucketNotification", False, rec("GetBucketNotification", "s3.amazonaws.com", {"bucketName": "trail-bucket"}))]),
]
def own(detail_type, state):
    return {"version": "0", "id": f"trail-silent-123456789012-us-east-1-{state}", "detail-type": detail_type,
            "source": "trail-alerts", "account": "123456789012", "region": "us-east-1", "time": "2024-01-10T14:00:00Z",
            "resources": [], "detail": {"state": state, "alertKey": "trail-silent|123456789012/us-east-1",
                                        "lastDelivery": "2024-01-10T08:00:00Z", "newestEvent": "2024-01-10T07:55:00Z",
                                        "silentFor": "6h", "allowed": "6h", "wholePipeline": False}}


silent = ["  - id: trail-silent",
          '    description: "An account and Region whose trail delivered before has delivered nothing for TRAIL_SILENCE_AFTER (raised by the function\'s sweep; resolved when deliveries resume)."',
          "    severity: high",
          '    pattern: {"source": ["trail-alerts"], "detail-type": ["Trail Silent", "Trail Silent Resolved"]}',
          "    tests:"]
for name, expect, event in [("fires on the sweep's silence event", True, own("Trail Silent", "SILENT")),
                            ("fires on its resolution", True, own("Trail Silent Resolved", "RESOLVED")),
                            ("quiet on AWS Backup's own events", False, dict(own("Backup Job State Change", "FAILED"), source="aws.backup"))]:
    silent += [f"      - name: {json.dumps(name)}", f"        expect: {'true' if expect else 'false'}", f"        event: {json.dumps(event)}"]
rules.append("\n".join(silent))

HEADER = """# Built-in rules: the calls that blind the pipeline — a trail stopped, deleted or changed, its
# management events dropped, the trail bucket's notifications replaced or the bucket deleted —
# and the silence itself: trail-silent, raised by the function's sweep when an account and
# Region stop delivering. Generated by scripts/gen-trail-pack.py.
rules:
"""
with open(os.path.join(ROOT, "rules/trail.yaml"), "w") as f:
    f.write(annotate(HEADER + "\n".join(rules) + "\n"))
