/*
 * Pod sandbox ("pause") process for the local cluster, built with `gcc -static`.
 * It holds the pod's namespaces: sleeps forever, exits 0 on SIGINT/SIGTERM and reaps
 * zombies on SIGCHLD (it is PID 1 of pods that share their PID namespace).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int signo) {
  (void)signo;
  _exit(0);
}

static void on_child(int signo) {
  (void)signo;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  struct sigaction term = {0}, child = {0};
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("raftkv-pause 1.0");
    return 0;
  }
  term.sa_handler = on_term;
  if (sigaction(SIGINT, &term, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0) return 1;
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP;
  if (sigaction(SIGCHLD, &child, NULL) < 0) return 2;
  for (;;) pause();
}
