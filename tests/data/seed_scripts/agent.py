#!/usr/bin/env python3
"""
Autonomous agent using ComfyFixerSmart
"""

import subprocess
import json
import time
import sys


def run_comfy_fixer():
    """Run ComfyFixerSmart and monitor progress"""

    print("Starting ComfyFixerSmart...")

    # Start process in background
    process = subprocess.Popen(
        [sys.executable, '-m', 'fixer', '--auto'],  # the one change: the command
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE
    )

    # Monitor status
    last_phase = None
    while True:
        # Check if process is still running
        if process.poll() is not None:
            print("Process completed")
            break

        # Read status
        try:
            with open('status.json') as f:
                status = json.load(f)
        except FileNotFoundError:
            time.sleep(1)
            continue

        # Report phase changes
        current_phase = status['phase']
        if current_phase != last_phase:
            print(f"\nPhase: {current_phase}")
            last_phase = current_phase

        # Report progress
        if 'progress' in status and status['progress']['total'] > 0:
            percent = status['progress']['percent']
            current = status['progress']['current']
            total = status['progress']['total']
            print(f"  Progress: [{current}/{total}] {percent}%", end='\r')

        # Check for errors
        if current_phase == 'error':
            print("\n✗ Error occurred!")
            for error in status.get('errors', []):
                print(f"  - {error['error']}")
            return False

        # Check for completion
        if current_phase == 'complete':
            print("\n✓ Complete!")
            break

        time.sleep(2)

    # Read results
    print("\n=== Results ===")

    with open('output/missing_models.json') as f:
        missing = json.load(f)
        print(f"Missing models found: {len(missing)}")

    with open('output/resolutions.json') as f:
        resolutions = json.load(f)
        civitai = sum(1 for r in resolutions if r['source'] == 'civitai')
        hf = sum(1 for r in resolutions if r['source'] == 'huggingface')
        not_found = sum(1 for r in resolutions if r['source'] == 'not_found')

        print(f"Resolved on Civitai: {civitai}")
        print(f"Resolved on HuggingFace: {hf}")
        print(f"Not found: {not_found}")

    # Check final status
    with open('status.json') as f:
        final_status = json.load(f)
        downloads_successful = final_status['data'].get('downloads_successful', 0)
        downloads_failed = final_status['data'].get('downloads_failed', 0)

        print(f"Downloads successful: {downloads_successful}")
        print(f"Downloads failed: {downloads_failed}")

    return downloads_failed == 0


if __name__ == '__main__':
    success = run_comfy_fixer()
    sys.exit(0 if success else 1)
