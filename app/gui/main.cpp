#include "application_setup.h"
#include "main_window.h"

#include <QApplication>
#include <QCommandLineParser>

int main(int argc, char* argv[]) {
    QApplication app(argc, argv);
    // QSettings reads these for the window layout and the recent models.
    QApplication::setOrganizationName("Quantlens");
    QApplication::setApplicationName("Quantlens");
    installApplicationIcon();

    QCommandLineParser parser;
    parser.setApplicationDescription("Quantlens studio: compress LLaMA-family models.");
    parser.addHelpOption();
    parser.addPositionalArgument("model", "HF model directory or llama2.c .bin to open.",
                                 "[model]");
    parser.process(app);

    MainWindow window;
    window.show();
    if (const QStringList args = parser.positionalArguments(); !args.isEmpty())
        window.openModel(args.first());
    return QApplication::exec();
}
