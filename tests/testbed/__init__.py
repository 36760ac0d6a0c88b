"""The test bed: real components started on this machine for devspace's tests.

Test infrastructure only; nothing here ships. See README.md in this folder.
"""
