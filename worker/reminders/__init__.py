"""Reminder emails ("Clara is counting on you"). Submodules import what they need; importing this
package loads nothing, so the intake can use `worker.reminders.tokens` and stay light."""
