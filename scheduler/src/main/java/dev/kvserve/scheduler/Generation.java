package dev.kvserve.scheduler;

final class Generation {}
