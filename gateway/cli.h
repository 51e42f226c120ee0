/*
 * cli: what the jobgate subcommands share, and the envelope subcommands (keygen and
 * verify) that live apart from main.c.
 */
#ifndef JOBGATE_CLI_H
#define JOBGATE_CLI_H

#include <stdio.h>
#include <sys/types.h>

/* The longest input line a subcommand reads. */
#define CLI_LINE_MAX (16 * 1024 * 1024)

/*
 * Reads one line of at most CLI_LINE_MAX bytes into *line (grown as needed), without
 * its newline. A longer line is read to its end and thrown away, with *too_long set.
 * Returns the length, or -1 at the end of input or out of memory.
 */
ssize_t cli_read_line(FILE *input, char **line, size_t *capacity, int *too_long);

/* jobgate keygen --kind sign|seal --kid NAME [--dir DIR] */
int command_keygen(int argc, char **argv);

/* jobgate verify --keys DIR [--queue Q] [--class C] [--now UNIX] [--leeway S] */
int command_verify(int argc, char **argv);

#endif
