import json
import boto3
import os

def handler(event, context):
    sns = boto3.client('sns')
    topic_arn = os.environ['SNS_TOPIC_ARN']
    
    # Process S3 replication events
    for record in event.get('Records', []):
        if record.get('eventSource') == 'aws:s3':
            message = {
                'eventName': record.get('eventName'),
                'bucket': record['s3']['bucket']['name'],
                'key': record['s3']['object']['key'],
                'region': record.get('awsRegion'),
                'timestamp': record.get('eventTime')
            }
            
            sns.publish(
                TopicArn=topic_arn,
                Message=json.dumps(message),
                Subject=f"S3 Replication Event: {record.get('eventName')}"
            )
    
    return {'statusCode': 200, 'body': json.dumps('Success')}
