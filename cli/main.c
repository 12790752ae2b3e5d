/* main.c -- `xbar`: git-style subcommands.  `xbar help` lists them; `xbar CMD --help` lists flags. */
#include "cli.h"

#include <string.h>

typedef struct { const char *name; int (*fn)(int, char **); const char *summary; } command;

static const command commands[] = {
    {"train", cmd_train, "train a model on CIFAR-10/100 (progress bar, per-epoch test accuracy, checkpoints)"},
    {"eval", cmd_eval, "test accuracy of trained weights (ideal, or on crossbars with --hw)"},
    {"infer", cmd_infer, "logits for an .npy batch of images"},
    {"info", cmd_info, "a model's layer table: shapes, parameters, MACs"},
    {"solve", cmd_solve, "exact crossbar circuit solve: output currents and effective matrix"},
    {"energy", cmd_energy, "energy, latency and area per image on the hardware of a config"},
    {"neat", cmd_neat, "NEAT on 1T-1R crossbars: cut-off conductances, weight cut-offs, per-layer gate voltages"},
};

static void usage(FILE *f) {
    fprintf(f, "xbar %s -- deep networks on simulated memristive crossbars\n\nusage: xbar COMMAND [flags]\n\n"
               "commands:\n", XB_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-8s %s\n  %-8s %s\n\n'xbar COMMAND --help' lists every flag with its type, default and range.\n",
            "help", "this text", "version", "print the version");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        if (argc >= 3 && strcmp(argv[1], "help") == 0) {
            for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
                if (!strcmp(argv[2], commands[i].name)) {
                    char *h[] = {"--help"};
                    return commands[i].fn(1, h);
                }
        }
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("xbar %s (convolution kernels: %s)\n", XB_VERSION, xb_conv2d_isa());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "xbar: error: unknown command '%s'\nHINT: 'xbar help' lists the commands\n", argv[1]);
    return 2;
}
