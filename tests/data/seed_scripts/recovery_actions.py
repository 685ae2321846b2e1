import json  # the guide's snippet continues the one before it, which imports json

with open('status.json') as f:
    status = json.load(f)

if status['phase'] == 'error':
    for error in status['errors']:
        print(f"Error: {error['error']}")

        if 'API error: 401' in error['error']:
            print("Action: Check API key in ~/.secrets")
        elif 'timeout' in error['error']:
            print("Action: Re-run with --resume")
        elif 'not found' in error['error']:
            print("Action: Review output/resolutions.json")
