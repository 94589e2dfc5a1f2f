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

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
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
    rule("trail-bucket-lifecycle-changed", "A bucket's lifecycle configuration was replaced or deleted: if it is the trail's bucket, its logs may now expire early (the function, which knows its trail buckets from ALLOWED_BUCKETS, alerts on those alone and counts the rest as suppressed).", "high",
         dict({"eventSource": ["s3.amazonaws.com"], "eventName": ["PutBucketLifecycle", "DeleteBucketLifecycle"]}, **ok),
         [("fires on PutBucketLifecycle", True, rec("PutBucketLifecycle", "s3.amazonaws.com", {"bucketName": "trail-bucket", "lifecycle": ""})),
          ("fires on DeleteBucketLifecycle", True, rec("DeleteBucketLifecycle", "s3.amazonaws.com", {"bucketName": "trail-bucket", "lifecycle": ""})),
          ("quiet on GetBucketLifecycle", False, rec("GetBucketLifecycle", "s3.amazonaws.com", {"bucketName": "trail-bucket"}))]),
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


def deleted(key, reason="DeleteObject", requester="123456789012"):
    """S3's own Object Deleted event (EventBridge), as the S3 User Guide shows it; the function
    makes the same event of an ObjectRemoved or LifecycleExpiration notification."""
    return {"version": "0", "id": "2ee9cc15-d022-99ea-1fb8-1b1bac4850f9", "detail-type": "Object Deleted", "source": "aws.s3",
            "account": "111122223333", "time": "2024-01-10T09:00:00Z", "region": "us-east-1", "resources": ["arn:aws:s3:::trail-bucket"],
            "detail": {"version": "0", "bucket": {"name": "trail-bucket"}, "object": {"key": key, "sequencer": "617f08299329d189"},
                       "request-id": "N4N7GDK58NMKJ12R", "requester": requester, "source-ip-address": "198.51.100.7",
                       "reason": reason, "deletion-type": "Permanently Deleted"}}


log_key = "AWSLogs/o-exampleorgid/123456789012/CloudTrail/us-east-1/2024/01/10/123456789012_CloudTrail_us-east-1_20240110T0855Z_abc.json.gz"
digest_key = "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/01/10/123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20240110T0855Z.json.gz"
removed = ["  - id: trail-log-deleted",
           '    description: "A trail log (or digest) was deleted from its bucket: by a request, or by a lifecycle expiry other than the one declared (TRAIL_LOG_EXPIRY_DAYS). Logs are evidence: an intruder deletes them."',
           "    severity: critical",
           '    summary: "Trail log s3://{detail.bucket.name}/{detail.object.key} deleted by {detail.requester} from {detail.source-ip-address} ({detail.reason}, {detail.deletion-type})"',
           '    pattern: {"source": ["aws.s3"], "detail-type": ["Object Deleted"], "detail": {"object": {"key": [{"wildcard": "*AWSLogs/*/CloudTrail*"}]}}}',
           # A mass deletion pages once: the first log at once, the others of the next 15
           # minutes in one grouped notification (with the state table).
           '    dedup: {"key": ["detail.bucket.name", "detail.object.key"], "window": "1h", "fields": ["detail.requester", "detail.reason"]}',
           '    group: {"by": ["detail.bucket.name"], "interval": "15m"}',
           "    tests:"]
for name, expect, event in [("fires on a log deleted by a request", True, deleted(log_key)),
                            ("fires on a digest deleted", True, deleted(digest_key)),
                            ("fires on a lifecycle expiry (one not declared; the function lets the declared one pass)", True, deleted(log_key, "Lifecycle Expiration", "s3.amazonaws.com")),
                            ("quiet on another object deleted", False, deleted("reports/2024/summary.csv")),
                            ("quiet on AWS Backup's own events", False, dict(own("Backup Job State Change", "FAILED"), source="aws.backup"))]:
    removed += [f"      - name: {json.dumps(name)}", f"        expect: {'true' if expect else 'false'}", f"        event: {json.dumps(event)}"]
rules.append("\n".join(removed))

HEADER = """# Built-in rules: the calls that blind the pipeline — a trail stopped, deleted or changed, its
# management events dropped, the trail bucket's notifications replaced, its lifecycle changed or
# the bucket deleted — the silence itself (trail-silent, raised by the function's sweep when an
# account and Region stop delivering), and log tamper: a trail log deleted (trail-log-deleted,
# from S3's Object Deleted events or the bucket's removal notifications). Generated by
# scripts/gen/trail-pack.py.
rules:
"""
with open(os.path.join(ROOT, "rules/trail.yaml"), "w") as f:
    f.write(annotate(HEADER + "\n".join(rules) + "\n"))
