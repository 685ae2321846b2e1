import json

with open('status.json') as f:
    status = json.load(f)

if status['phase'] == 'complete':
    data = status['data']
    print(f"✓ Scanned {data['workflows_scanned']} workflows")
    print(f"✓ Downloaded {data['downloads_successful']} models")
elif status['phase'] == 'error':
    print("✗ Error occurred, check logs")
else:
    print(f"Running: {status['phase']} ({status['progress']['percent']}%)")
