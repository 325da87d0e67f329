#include "model_summary_view.h"

#include "quantlens/model/model.h"
#include "quantlens/quantization/run_record.h"

#include "run_description.h"

#include <QHeaderView>
#include <QLocale>
#include <QStringList>

#include <array>
#include <string_view>
#include <utility>

namespace {

// "172 × 64": rows × columns as the weights are stored ([out, in] for linear layers).
QString shapeText(const std::vector<std::int64_t>& shape) {
    QStringList dims;
    for (std::int64_t d : shape)
        dims << QString::number(d);
    return dims.join(" × ");
}

QString bytesText(std::size_t bytes) {
    return QLocale().toString(qulonglong(bytes));
}

QString formatName(quantlens::ModelFormat format) {
    switch (format) {
    case quantlens::ModelFormat::HuggingFace:
        return "Hugging Face";
    case quantlens::ModelFormat::Llama2c:
        return "llama2.c";
    }
    return {};
}

} // namespace

ModelSummaryView::ModelSummaryView(QWidget* parent) : QTreeWidget(parent) {
    setHeaderLabels({tr("Name"), tr("Shape"), tr("Type"), tr("Bytes"), tr("Method"), tr("Bits"),
                     tr("Outliers"), tr("Error")});
    for (const Column column : {BitsColumn, OutliersColumn, ErrorColumn})
        headerItem()->setTextAlignment(column, Qt::AlignRight | Qt::AlignVCenter);
    headerItem()->setToolTip(ErrorColumn, tr("relative output error ‖WX − ŴX‖² / ‖WX‖²"));
    headerItem()->setToolTip(MethodColumn,
                             tr("The method of the run shown, in its colour on the charts:<br>%1")
                                 .arg(methodColourKey()));
    connect(this, &QTreeWidget::currentItemChanged, this, [this](QTreeWidgetItem* item) {
        if (item && item->data(NameColumn, BlockRole).isValid())
            emit linearLayerSelected(item->data(NameColumn, BlockRole).toInt(),
                                     item->text(NameColumn));
    });
    headerItem()->setTextAlignment(BytesColumn, Qt::AlignRight | Qt::AlignVCenter);
    header()->setStretchLastSection(false);
    setUniformRowHeights(true);
    setAlternatingRowColors(true);
    setEditTriggers(NoEditTriggers);
}

void ModelSummaryView::showModel(const quantlens::Model& model) {
    clear();
    QTreeWidgetItem* architecture = addArchitecture(model);
    addTensor(nullptr, "embed_tokens", model.embedding);

    for (std::size_t i = 0; i < model.blocks.size(); ++i) {
        const quantlens::BlockWeights& b = model.blocks[i];
        auto* block = new QTreeWidgetItem(this, {tr("block %1").arg(i)});
        std::size_t bytes = 0;
        // Hugging Face's short names, whatever the file format calls them.
        for (const quantlens::BlockTensorSpec& spec : quantlens::kBlockTensors) {
            if (!quantlens::hasBlockTensor(spec, model.config)) continue;
            const quantlens::TensorView& tensor = b.*spec.weights;
            QTreeWidgetItem* item = addTensor(block, spec.label, tensor);
            if (spec.kind == quantlens::BlockTensorKind::Weight)
                item->setData(NameColumn, BlockRole, int(i));
            bytes += tensor.byteSize();
        }
        block->setText(BytesColumn, bytesText(bytes));
        block->setTextAlignment(BytesColumn, Qt::AlignRight | Qt::AlignVCenter);
    }

    addTensor(nullptr, "norm", model.finalNorm);
    QTreeWidgetItem* head = addTensor(nullptr, "lm_head", model.lmHead);
    if (model.config.tiedEmbeddings) {
        // Counted once, under embed_tokens.
        head->setText(BytesColumn, tr("tied"));
        head->setToolTip(NameColumn, tr("tied to embed_tokens: the head shares its weights"));
    }

    // Columns fit what is under collapsed items too, so that expanding a block never truncates it.
    expandAll();
    for (int column = 0; column < columnCount(); ++column)
        resizeColumnToContents(column);
    collapseAll();
    architecture->setExpanded(true);
}

QSize ModelSummaryView::sizeHint() const {
    // Wide enough for a block's tensor names, shapes and sizes, since a dock starts at this width.
    return {fontMetrics().averageCharWidth() * 64, QTreeWidget::sizeHint().height()};
}

QTreeWidgetItem* ModelSummaryView::addArchitecture(const quantlens::Model& model) {
    const quantlens::ModelConfig& c = model.config;
    const QLocale locale;
    auto* item = new QTreeWidgetItem(this, {tr("architecture"), formatName(model.format)});
    const QString features = QString::fromStdString(c.features());
    const std::pair<QString, QString> rows[] = {
        {tr("class"), QString::fromStdString(quantlens::architectureName(c.architecture))},
        {tr("features"), features.isEmpty() ? tr("none") : features},
        {tr("hidden size"), locale.toString(c.hiddenSize)},
        {tr("intermediate size"), locale.toString(c.intermediateSize)},
        {tr("layers"), locale.toString(c.layerCount)},
        {tr("attention heads"), locale.toString(c.headCount)},
        {tr("kv heads"), locale.toString(c.kvHeadCount)},
        {tr("head dim"), locale.toString(c.headDim)},
        {tr("vocabulary"), locale.toString(c.vocabSize)},
        {tr("context"), locale.toString(c.maxPositions)},
        {tr("tied embeddings"), c.tiedEmbeddings ? tr("yes") : tr("no")},
        {tr("parameters"), locale.toString(qlonglong(model.parameterCount()))},
        {tr("stored"), locale.formattedDataSize(qint64(model.storedBytes()))},
    };
    for (const auto& [key, value] : rows)
        new QTreeWidgetItem(item, {key, value});
    return item;
}

QTreeWidgetItem* ModelSummaryView::addTensor(QTreeWidgetItem* parent, const QString& label,
                                             const quantlens::TensorView& tensor) {
    auto* item = parent ? new QTreeWidgetItem(parent) : new QTreeWidgetItem(this);
    const std::string_view dtype = quantlens::dtypeName(tensor.dtype);
    item->setText(NameColumn, label);
    item->setText(ShapeColumn, shapeText(tensor.shape));
    item->setText(DTypeColumn, QString::fromUtf8(dtype.data(), qsizetype(dtype.size())));
    item->setText(BytesColumn, bytesText(tensor.byteSize()));
    item->setTextAlignment(BytesColumn, Qt::AlignRight | Qt::AlignVCenter);
    item->setData(NameColumn, Qt::UserRole, QString::fromStdString(tensor.name));
    item->setToolTip(NameColumn, QString::fromStdString(tensor.name + " in " + tensor.file));
    return item;
}

void ModelSummaryView::showRun(const quantlens::RunRecord& run) {
    const QLocale locale;
    for (int i = 0; i < topLevelItemCount(); ++i) {
        QTreeWidgetItem* block = topLevelItem(i);
        for (int j = 0; j < block->childCount(); ++j) {
            QTreeWidgetItem* item = block->child(j);
            if (!item->data(NameColumn, BlockRole).isValid()) continue;
            const int index = item->data(NameColumn, BlockRole).toInt();
            for (const quantlens::LayerReport& layer : run.layers) {
                if (layer.block != index || QString::fromStdString(layer.name) != item->text(0))
                    continue;
                // A bit budget's layers each have their own settings: the column shows them.
                const QString settings = QString::fromStdString(quantlens::describe(layer.config));
                item->setText(MethodColumn, run.targetBits ? settings : methodLabel(run.config));
                item->setData(MethodColumn, Qt::DecorationRole, methodColour(run.config));
                item->setToolTip(MethodColumn, settings);
                item->setText(BitsColumn, locale.toString(layer.bitsPerParameter, 'f', 3));
                item->setText(OutliersColumn, locale.toString(qlonglong(layer.outliers)));
                item->setText(ErrorColumn, locale.toString(layer.relativeOutputError, 'e', 2));
                for (const Column column : {BitsColumn, OutliersColumn, ErrorColumn})
                    item->setTextAlignment(column, Qt::AlignRight | Qt::AlignVCenter);
            }
        }
    }
    for (const Column column : {MethodColumn, BitsColumn, OutliersColumn, ErrorColumn})
        resizeColumnToContents(column);
}
